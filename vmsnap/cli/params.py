"""How typer shows vmsnap's parameters: no Python types in --help
(``<list[str]>``, ``{source}``) and parser errors in plain words, not
pydantic's ("Input should be greater than or equal to 1").

Every command is built with :class:`Command`, which gives its parameters the
two small subclasses below.
"""

from __future__ import annotations

import re
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperOption

_PLAIN = (
    (re.compile(r"Input should be greater than or equal to (\S+)"), r"must be \1 or more"),
    (re.compile(r"Input should be less than or equal to (\S+)"), r"must be \1 or less"),
    (re.compile(r"Input should be a valid integer\b.*"), "not a whole number"),
    (re.compile(r"Input should be a valid number\b.*"), "not a number"),
    (re.compile(r"^Value error, "), ""),
)


def plain(message: str) -> str:
    """A pydantic validation message in the words the rest of vmsnap uses."""
    for pattern, words in _PLAIN:
        message = pattern.sub(words, message)
    return message


def _plain_errors(process: Any) -> Any:
    """Wrap a parameter's ``process_value``: a BadParameter says it plainly."""

    def run(param: Any, ctx: Any, value: Any) -> Any:
        try:
            return process(param, ctx, value)
        except typer.BadParameter as exc:
            exc.message = plain(exc.message)
            raise

    return run


class _Argument(TyperArgument):
    """Shown as its metavar alone, in the usage line and under Arguments."""

    process_value = _plain_errors(TyperArgument.process_value)

    def display_type_rich(self, ctx: Any) -> str | None:  # noqa: ARG002 - typer's signature
        return None

    def get_usage_pieces(self, ctx: Any) -> list[str]:  # noqa: ARG002 - typer's signature
        if self.metavar is not None:
            return [self.metavar]
        name = (self.name or "").upper()
        name = name if self.required else f"[{name}]"
        return [name if self.nargs == 1 else f"{name}..."]


class _Option(TyperOption):
    process_value = _plain_errors(TyperOption.process_value)


class Command(TyperCommand):
    """A vmsnap command: its parameters show and complain as above."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _Argument
            elif type(param) is TyperOption:
                param.__class__ = _Option
