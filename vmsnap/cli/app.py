"""The Typer apps, the command registry, and the one place where errors become
exit codes.

``main`` makes a :class:`Session` for the run and hands it to typer as
``ctx.obj``; the ``_root`` callback fills it from the global options.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from vmsnap import __version__
from vmsnap.cli import cmd_backup, cmd_checkpoint, cmd_dest, cmd_image, cmd_list, cmd_restore
from vmsnap.cli.session import Session
from vmsnap.console import close_log_file, setup_logging, to_log_file
from vmsnap.errors import ExitCode, Interrupted, VmsnapError
from vmsnap.signals import GATE

EXIT_STATUS = """\b
EXIT STATUS
   0   success
   1   partial: some guests backed up, some failed
   2   usage error
   3   not found (guest, volume, file)
   4   a disk that cannot be snapshotted (not an LV)
   5   a volume group without room for the snapshots
   6   LVM tools missing or an LVM command failed
   7   libvirt connection or call failed
   8   the requested quiesce mode could not be applied
   9   destination missing, unwritable or full
  10   integrity: data does not match its length or checksum
  11   another vmsnap run holds the lock
  12   something left behind (a snapshot, a paused or frozen guest)
  13   a hook vetoed, failed, timed out or was refused as unsafe
  14   a guest, LV or file to create already exists
  70   internal error (a bug: please report it, with --debug output)
 129/130/143  interrupted by SIGHUP/SIGINT/SIGTERM"""

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
    (image_app, "dump", cmd_image.image_dump),
    (image_app, "load", cmd_image.image_load),
    (checkpoint_app, "create", cmd_checkpoint.checkpoint_create),
    (checkpoint_app, "list", cmd_checkpoint.checkpoint_list),
    (checkpoint_app, "rollback", cmd_checkpoint.checkpoint_rollback),
    (checkpoint_app, "release", cmd_checkpoint.checkpoint_release),
    (checkpoint_app, "watch", cmd_checkpoint.checkpoint_watch),
)
"""Every command, in the order --help lists them: (group, name, function)."""

for _group, _name, _function in COMMANDS:
    _group.command(_name, epilog=EXIT_STATUS)(_function)
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
        int, typer.Option("--verbose", "-v", count=True, help="More log output.")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
    version: Annotated[  # noqa: ARG001 - handled by its eager callback
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    hooks_dir: HooksDirOpt = None,
    config_file: ConfigOpt = None,
    log_file: LogFileOpt = None,
) -> None:
    session = Session.of(ctx)
    session.debug = debug
    session.quiet = quiet
    session.hooks_dir = hooks_dir
    session.config_file = config_file
    setup_logging(2 if debug else (-1 if quiet else verbose), log_file=log_file)
    to_log_file(logging.INFO, f"started: vmsnap {ctx.invoked_subcommand or ''}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: the one place errors become exit codes."""
    code = _run(argv, Session())
    to_log_file(logging.INFO, f"exit status {code}")
    close_log_file()
    return code


def _report(session: Session, exc: BaseException, code: int) -> int:
    session.error(str(exc), exc)
    return code


def _run(argv: list[str] | None, session: Session) -> int:
    GATE.install()
    try:
        app(args=argv, prog_name="vmsnap", obj=session)  # usage errors exit 2 by themselves
    except SystemExit as exc:
        code = _status(exc.code)
    except Interrupted as exc:
        return _report(session, exc, 128 + exc.signum)
    except KeyboardInterrupt:  # only before the gate is installed
        return _report(session, Interrupted(2), 130)
    except VmsnapError as exc:
        return _report(session, exc, int(exc.exit_code))
    except Exception as exc:  # noqa: BLE001 - the last resort: report, never a bare traceback
        return _report(session, exc, ExitCode.INTERNAL)
    finally:
        sys.stdout.flush()
    if code == 0 and GATE.pending is not None:
        return 128 + GATE.pending
    return code


def _status(code: Any) -> int:
    """A SystemExit's code as an exit status."""
    return code if isinstance(code, int) else (0 if code is None else 1)
