"""The ``alphagrad`` command line."""

from __future__ import annotations

import click

from alphagrad import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="alphagrad")
def main() -> None:
    """Train tokenizers and GPT models, sample from them, and keep records of runs."""
