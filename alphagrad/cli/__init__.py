"""The ``alphagrad`` command line: tokenizers, data, training, sampling, run records.

    alphagrad train --preset char-tiny            # the built-in corpus, then samples
    alphagrad COMMAND --help                      # every command, with examples

A user's mistake prints one ``error: ...`` line and exits with status 2 (see ``errors.py``).
"""

from __future__ import annotations

import click

from alphagrad import __version__
from alphagrad.cli.bench import bench
from alphagrad.cli.data import prepare
from alphagrad.cli.errors import Group
from alphagrad.cli.model import eval_command, export, import_hf, sample_command
from alphagrad.cli.runs import runs
from alphagrad.cli.tokenizer import tokenizer
from alphagrad.cli.train import train


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="alphagrad")
def main() -> None:
    """Train tokenizers and GPT models on a CPU, sample from them, and keep records of runs.

    \b
    Start here:
      alphagrad train --preset char-tiny     trains on Python's own sources, then samples
    \b
    From a folder of text:
      alphagrad tokenizer train corpus/ --vocab-size 4096 -o tok.json
      alphagrad prepare corpus/ --tokenizer tok.json -o data/corpus
      alphagrad train --preset bpe-small --data data/corpus
      alphagrad sample runs/RUN --prompt 'Once upon a time'
    """


for command in (tokenizer, prepare, train, sample_command, eval_command, runs, export, import_hf,
                bench):
    main.add_command(command)

__all__ = ["main"]
