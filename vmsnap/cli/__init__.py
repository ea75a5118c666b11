"""The command line: parse, build frozen settings, call the core, render.

``app`` (vmsnap.cli.app) holds the Typer apps, the command registry and the
mapping of errors to exit status; ``session`` the per-run options and the
option > configuration file > default rule; ``jsondoc`` every --json document;
``cmd_*`` one module per command group, with its text output.
"""

from vmsnap.cli.app import app, main

__all__ = ["app", "main"]
