"""The Typer apps, the command registry, and the one place where errors become
exit codes.

``main`` makes a :class:`Session` for the run and hands it to typer as
``ctx.obj``; the ``_root`` callback fills it from the global options.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from vmsnap import __version__, lock
from vmsnap.cli import (
    cmd_backup,
    cmd_checkpoint,
    cmd_dest,
    cmd_image,
    cmd_list,
    cmd_repo,
    cmd_restore,
    jsondoc,
)
from vmsnap.cli.params import Command, hoist_globals
from vmsnap.cli.session import Session
from vmsnap.console import close_log_file, setup_logging, to_log_file
from vmsnap.errors import EXIT_MEANINGS, ExitCode, Interrupted, VmsnapError
from vmsnap.signals import GATE


def exit_status_text() -> str:
    """The EXIT STATUS section of every --help, made from errors.EXIT_MEANINGS."""
    lines = ["\b", "EXIT STATUS"]
    for code in ExitCode:
        if code is ExitCode.INTERRUPTED:
            lines.append(f" 129/130/143  {EXIT_MEANINGS[code]}")
        else:
            lines.append(f"{int(code):>4}   {EXIT_MEANINGS[code]}")
    return "\n".join(lines)


EXIT_STATUS = exit_status_text()

app = typer.Typer(
    help="Back up and clone libvirt guests whose disks are LVM logical volumes.",
    epilog=EXIT_STATUS,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
image_app = typer.Typer(
    help="Stream any block device or file to and from a zstd image.",
    epilog=EXIT_STATUS,
    no_args_is_help=True,
    rich_markup_mode=None,
)
checkpoint_app = typer.Typer(
    help="Keep a guest's snapshots across an upgrade; roll back to them or release them.",
    epilog=EXIT_STATUS,
    no_args_is_help=True,
    rich_markup_mode=None,
)

COMMANDS: tuple[tuple[typer.Typer, str, Callable[..., None]], ...] = (
    (app, "list", cmd_list.list_cmd),
    (app, "backup", cmd_backup.backup_cmd),
    (app, "cleanup", cmd_backup.cleanup_cmd),
    (app, "verify", cmd_dest.verify_cmd),
    (app, "prune", cmd_dest.prune_cmd),
    (app, "backups", cmd_dest.backups_cmd),
    (app, "restore", cmd_restore.restore_cmd),
    (app, "clone", cmd_restore.clone_cmd),
    (app, "init", cmd_repo.init_cmd),
    (app, "export", cmd_repo.export_cmd),
    (image_app, "dump", cmd_image.image_dump),
    (image_app, "load", cmd_image.image_load),
    (image_app, "store", cmd_repo.image_store),
    (checkpoint_app, "create", cmd_checkpoint.checkpoint_create),
    (checkpoint_app, "list", cmd_checkpoint.checkpoint_list),
    (checkpoint_app, "rollback", cmd_checkpoint.checkpoint_rollback),
    (checkpoint_app, "release", cmd_checkpoint.checkpoint_release),
    (checkpoint_app, "watch", cmd_checkpoint.checkpoint_watch),
)
"""Every command, in the order --help lists them: (group, name, function)."""


class _StdoutClosed(Exception):
    """A BrokenPipeError on its way past typer (which would make it exit 1)."""


def _pipe_guarded(function: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except BrokenPipeError as exc:
            raise _StdoutClosed from exc

    return run


for _group, _name, _function in COMMANDS:
    _group.command(_name, epilog=EXIT_STATUS, cls=Command)(_pipe_guarded(_function))
app.add_typer(image_app, name="image")
app.add_typer(checkpoint_app, name="checkpoint")


def _version(value: bool) -> None:
    if value:
        print(f"vmsnap {__version__}")
        raise typer.Exit()


HooksDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--hooks-dir",
        metavar="DIR",
        help="Hooks folder (default: $VMSNAP_HOOKS_DIR, else hooks_dir in the "
        "configuration file, else /etc/vmsnap/hooks.d).",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="Configuration file (default: $VMSNAP_CONFIG, else /etc/vmsnap/vmsnap.toml "
        "if it exists).",
    ),
]
LockWaitOpt = Annotated[
    float | None,
    typer.Option(
        "--lock-wait",
        metavar="SECONDS",
        min=0,
        help="How long to wait for another run's lock (default: $VMSNAP_LOCK_WAIT, else 60).",
    ),
]
LogFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--log-file",
        metavar="PATH",
        help="Also append timestamped log lines (INFO and up, errors, exit status) here.",
    ),
]


@app.callback()
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="Log each step; -vv: every command run too.",
        ),
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
    version: Annotated[  # noqa: ARG001 - handled by its eager callback
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    hooks_dir: HooksDirOpt = None,
    config_file: ConfigOpt = None,
    log_file: LogFileOpt = None,
    lock_wait: LockWaitOpt = None,
) -> None:
    session = Session.of(ctx)
    lock.set_wait(session.lock_wait(lock_wait))
    session.debug = debug
    session.quiet = quiet
    session.hooks_dir = hooks_dir
    session.config_file = config_file
    setup_logging(2 if debug else (-1 if quiet else verbose), log_file=log_file)
    to_log_file(logging.INFO, f"started: {shlex.join(['vmsnap', *session.argv])}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: the one place errors become exit codes."""
    args = sys.argv[1:] if argv is None else argv
    code = _run(args, Session(argv=list(args)))
    to_log_file(logging.INFO, f"exit status {code}")
    close_log_file()
    return code


def _report(session: Session, exc: BaseException, code: int) -> int:
    """The error line; with --json, also the error document on stdout."""
    session.error(str(exc), exc)
    if session.json:
        jsondoc.emit(jsondoc.exit_error(str(exc), code))
    return code


def _run(argv: list[str], session: Session) -> int:
    GATE.install()
    try:
        code = _invoke(argv, session)
        sys.stdout.flush()
    except BrokenPipeError:
        return _broken_pipe()
    if code == 0 and GATE.pending is not None:
        return 128 + GATE.pending
    return code


def _invoke(argv: list[str], session: Session) -> int:
    """The command's exit status: its own, or its error's."""
    try:
        command = typer.main.get_command(app)
        args = hoist_globals(argv, command.params)
        command(args=args, prog_name="vmsnap", obj=session)  # usage errors exit 2 by themselves
    except SystemExit as exc:
        return _status(exc.code)
    except Interrupted as exc:
        return _report(session, exc, 128 + exc.signum)
    except KeyboardInterrupt:  # only before the gate is installed
        return _report(session, Interrupted(2), 130)
    except Exception as exc:  # noqa: BLE001 - the last resort: report, never a bare traceback
        if _is_broken_pipe(exc):
            return _broken_pipe()
        code = exc.exit_code if isinstance(exc, VmsnapError) else ExitCode.INTERNAL
        return _report(session, exc, int(code))
    return 0


def _is_broken_pipe(exc: BaseException | None) -> bool:
    """The reader of stdout went away (``vmsnap ... | head``), maybe under a wrapping error."""
    while exc is not None:
        if isinstance(exc, BrokenPipeError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _broken_pipe() -> int:
    """Exit quietly as a program killed by SIGPIPE would (141), with stdout
    pointed at /dev/null so that nothing complains at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def _status(code: Any) -> int:
    """A SystemExit's code as an exit status."""
    return code if isinstance(code, int) else (0 if code is None else 1)
