"""The ``regfw`` command line.

Only click and regfw's light modules are imported here: torch and mlflow are imported inside
the commands that need them, so ``regfw --help``, ``regfw list`` and ``regfw plugins`` stay fast.
"""

from __future__ import annotations

import errno
import os
import sys

import click

from regfw import __version__
from regfw.cli import inspect as inspect_commands
from regfw.cli import run as run_commands
from regfw.cli import ui as ui_commands
from regfw.errors import RegfwError
from regfw.interrupts import Interrupted


def _fail(message: str, code: int) -> None:
    # One line, whatever the message holds: every character Python's splitlines() breaks at is escaped
    # (a path typed with \x85 or \u2028 in it is two lines to a reader otherwise).
    message = "".join(c if not (c + "x").splitlines()[1:] else c.encode("unicode_escape").decode() for c in message)
    if len(message) > 1000:  # a huge value typed in: keep the start and the end, which says what is wrong
        message = message[:600] + "..." + message[-300:]
    click.echo(f"regfw: error: {message}", err=True)
    sys.exit(code)


OUTPUT_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EPIPE, errno.EIO, errno.EFBIG)  # `regfw list > /dev/full`


def _output_lost() -> None:
    """stdout cannot take the rest: point it at /dev/null so the exit's own flush of what is
    still buffered does not fail a second time with Python's "Exception ignored" text."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class RegfwGroup(click.Group):
    """A group whose every user error is one line on stderr and a non-zero exit, no traceback.

    Done in ``main`` so the console script and Click's ``CliRunner`` take the same path.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name or "regfw", complete_var, standalone_mode=False, **extra)
        except RegfwError as exc:
            _fail(str(exc), 1)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "regfw"
            _fail(" ".join(exc.format_message().split()) + f" (see '{command} --help')", exc.exit_code)
        except click.ClickException as exc:
            _fail(" ".join(exc.format_message().split()), exc.exit_code)
        except (click.exceptions.Abort, KeyboardInterrupt):
            _fail("interrupted", 130)
        except Interrupted as exc:  # SIGTERM (a BaseException, like Ctrl-C)
            _fail("terminated", exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
            if os.environ.get("REGFW_DEBUG") == "1":
                raise
            if isinstance(exc, OSError) and exc.errno in OUTPUT_ERRORS:
                _output_lost()
                _fail(f"cannot write {exc.filename or 'the output'}: {exc.strerror}", 1)
            from regfw.errors import one_line

            _fail(f"unexpected {one_line(exc)} (REGFW_DEBUG=1 shows the traceback)", 1)
        sys.exit(code if isinstance(code, int) else 0)


# regfw.store.direct reads these; named here so that `regfw --help` imports nothing of the store.
DIRECT_STORE_SWITCH = "REGFW_DIRECT_STORE"
VERBOSE_SWITCH = "REGFW_VERBOSE"


@click.group(cls=RegfwGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="regfw")
@click.option("--direct-store/--no-direct-store", default=None,
              help="Write runs into an existing SQLite store directly (the default) or through MLflow's own "
                   "client for every write (--no-direct-store; as REGFW_DIRECT_STORE=0).")
@click.option("--verbose", "-v", is_flag=True,
              help="Print regfw's notes on stderr, e.g. when a store is written through MLflow's own client.")
def cli(direct_store, verbose):
    """Run small PyTorch experiments composed from plugins, and compare them in MLflow.

    \b
    Start with:
      regfw list                  what experiments and components are installed
      regfw show linear           the exact configuration a run would use
      regfw run linear            train it and record the run in ./mlruns
      regfw ui                    open the runs in the MLflow UI
    """
    # Set in the environment, not in a module: a sweep's workers, Ray's and torchrun's processes
    # inherit it and write their runs the same way.
    if direct_store is not None:
        os.environ[DIRECT_STORE_SWITCH] = "1" if direct_store else "0"
    if verbose:
        os.environ[VERBOSE_SWITCH] = "1"


from regfw.cli import runs as runs_commands  # noqa: E402
from regfw.cli import sweep as sweep_commands  # noqa: E402
from regfw.cli import authoring as authoring_commands  # noqa: E402
from regfw.cli import resume as resume_commands  # noqa: E402
from regfw.cli import landscape as landscape_commands  # noqa: E402
from regfw.cli import tune as tune_commands  # noqa: E402
from regfw.cli import rerun as rerun_commands  # noqa: E402

for module in (run_commands, inspect_commands, ui_commands, sweep_commands, runs_commands, authoring_commands,
               resume_commands, landscape_commands, tune_commands, rerun_commands):
    for command in module.COMMANDS:
        cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``regfw``)."""
    from regfw.interrupts import redeliver_lost_interrupts

    redeliver_lost_interrupts()
    try:
        cli.main(args=argv, prog_name="regfw")
    except SystemExit as exc:
        if exc.code in (130, 143):  # interrupted: everything is recorded, leave now
            exit_now(exc.code)
        raise


def exit_now(code: int) -> None:
    """Exit without tearing the interpreter down. With torch, MLflow and matplotlib loaded that
    teardown takes seconds of CPU, which a Ctrl-C or SIGTERM must not wait for; the exit
    handlers (MLflow's among them) still run and the output is flushed."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
