"""Architecture search: the constrained evolution, nested family search, and the build's search
stage (``famc.search.stage``)."""
