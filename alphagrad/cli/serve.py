"""``alphagrad serve``: the models and runs over HTTP (the OpenAI API and a web page)."""

from __future__ import annotations

from pathlib import Path

import click

from alphagrad.cli.errors import UserError
from alphagrad.cli.options import resolve_run, runs_root_option, threads_option


@click.command()
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path),
                metavar="[CKPT|RUN|HF_FOLDER]...")
@runs_root_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; the default is reachable from this machine only.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--api-key", envvar="ALPHAGRAD_API_KEY", show_envvar=True,
              help="Require 'Authorization: Bearer KEY' on every API call.")
@click.option("--slots", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Sequences each model decodes together; more requests wait their turn.")
@threads_option
def serve(sources: tuple[Path, ...], runs_root: Path, host: str, port: int,
          api_key: str | None, slots: int) -> None:
    """Serve models through the OpenAI API (with continuous batching), and the runs under
    --runs-root on a live web page. Ctrl-C stops it.

    \b
    Examples:
      alphagrad serve 20260101-120000               # then open http://127.0.0.1:8000/
      alphagrad serve best.ckpt gpt2-hf/ --port 9000 --api-key secret
      alphagrad serve                               # only the runs dashboard
    """
    try:
        from alphagrad.serve import create_app, load_all, run
    except ModuleNotFoundError as e:  # the message names the extra to install
        raise UserError(str(e)) from None

    models = load_all([resolve_run(source, runs_root) for source in sources], slots=slots)
    app = create_app(models, runs_root=runs_root, api_key=api_key)
    shown = "[::1]" if host == "::1" else host
    click.echo(f"serving {', '.join(models) or 'no models'} and the runs in {runs_root} at "
               f"http://{shown}:{port}/ (Ctrl-C stops)", err=True)
    run(app, host, port)
