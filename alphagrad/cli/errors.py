"""How commands fail: a user's mistake is one ``error: ...`` line on stderr and exit status 2.

Library functions raise ValueError (CheckpointError is one), KeyError and FileNotFoundError for
bad input; ``Group`` turns those, and click's own usage errors, into ``UserError`` in one place,
so no command needs a try block of its own. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Any

import click

USER_MISTAKES = (ValueError, KeyError, FileNotFoundError, FileExistsError, IsADirectoryError,
                 NotADirectoryError, PermissionError)
INTERRUPTED = 130  # the shell's status for a command stopped by SIGINT


class UserError(click.ClickException):
    """Printed as ``error: message`` on stderr; exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class Failure(UserError):
    """A command that ran but could not finish (e.g. training diverged); exit status 1."""

    exit_code = 1


def describe(error: BaseException) -> str:
    """One line for a library exception: its message, without Python's decorations."""
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


def _usage(error: click.UsageError) -> UserError:
    where = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
    return UserError(error.format_message() + where)


class Group(click.Group):
    """The top-level group: the one place where user mistakes become ``UserError``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise _usage(e) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise _usage(e) from None
        except USER_MISTAKES as e:
            raise UserError(describe(e)) from None
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            raise click.exceptions.Exit(INTERRUPTED) from None
