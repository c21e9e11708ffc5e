"""``python -m alphagrad.cli``: the same as the ``alphagrad`` command."""

from alphagrad.cli import main

main(prog_name="alphagrad")
