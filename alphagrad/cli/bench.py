"""``alphagrad bench``: the benchmark scripts of a source checkout, their tables streamed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from alphagrad._cpus import usable_cores
from alphagrad.cli.errors import Failure

SUITES = {"kernels": ("bench_kernels.py", "bench_attention.py"), "gpt": ("bench_gpt.py",),
          "tokenizers": ("bench_tokenizers.py",)}
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout, when installed with pip -e


def benchmarks_dir(root: Path = SOURCE_ROOT) -> Path:
    """``root/benchmarks``, ``root`` being the folder that holds the package: present in a
    source checkout, not in an installed wheel."""
    folder = root / "benchmarks"
    if not (folder / SUITES["gpt"][0]).is_file():
        raise FileNotFoundError(f"the benchmark scripts are not installed here ({folder} is "
                                "missing); run alphagrad bench from a source checkout "
                                "(pip install -e .)")
    return folder


def run_script(script: Path, args: list[str]) -> None:
    """Run one benchmark in a fresh interpreter, echoing its output line by line."""
    click.echo(f"== {script.name} {' '.join(args)}".rstrip())
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    with subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env) as process:
        for line in process.stdout:
            click.echo(line, nl=False)
    if process.returncode:
        raise Failure(f"{script.name} exited with status {process.returncode}")


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--suite", type=click.Choice([*SUITES, "all"]), default="all", show_default=True,
              help="kernels: the Numba kernels and attention; gpt: training and inference "
                   "speed; tokenizers: BPE training and encoding.")
@click.option("--threads", type=click.IntRange(min=1), default=usable_cores,
              help="Threads for every side of every comparison (default: the cores this "
                   "process may use).")
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- SCRIPT_ARGS]")
def bench(suite: str, threads: int, script_args: tuple[str, ...]) -> None:
    """Run the benchmark suites against PyTorch, Hugging Face tokenizers and tiktoken (where
    installed: pip install -e ".[bench]") and print their tables.

    \b
    Examples:
      alphagrad bench --suite kernels
      alphagrad bench --suite gpt --threads 2 -- --config tiny
    """
    folder = benchmarks_dir()
    for name in SUITES if suite == "all" else (suite,):
        for script in SUITES[name]:
            run_script(folder / script, ["--threads", str(threads), *script_args])
