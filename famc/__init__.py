"""famc: compile a nested family of deployable models from one weight-sharing supernet."""

__version__ = "0.1.0"
