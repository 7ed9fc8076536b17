"""``python -m famc`` (also ``torchrun --nproc_per_node N -m famc train ...``)."""

from famc.cli import app

app(prog_name="famc")
