"""The ``alphagrad`` command line: tokenizers, data, training, sampling, run records.

    alphagrad train --preset char-tiny            # the built-in corpus, then samples
    alphagrad COMMAND --help                      # every command, with examples

A user's mistake prints one ``error: ...`` line and exits with status 2 (see ``errors.py``).
"""

from __future__ import annotations

import click

from alphagrad import __version__
from alphagrad.cli import bench, data, model, runs, serve, tokenizer, train
from alphagrad.cli.errors import Group


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


for command in (tokenizer.tokenizer, data.prepare, train.train, model.sample_command,
                model.eval_command, runs.runs, model.export, model.import_hf, bench.bench,
                serve.serve):
    main.add_command(command)

__all__ = ["main"]
