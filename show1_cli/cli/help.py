"""How `--help` names the values options and arguments take.

Typer prints a type placeholder beside every parameter: `<bool>` on flags, `<str>`, `<list[str]>`, and
required arguments as `{IN}`. show1's help says instead what to type: flags stand alone, arguments go by
their upper-case name (`PROMPT`, `[PROMPT]` when optional), an option shows its metavar (`FILE`,
`SECTION.KEY=VALUE`), its choices (`[none|model|sequential]`) or, failing both, its kind (`INTEGER`).
`Typer` below is `typer.Typer` with its commands and groups built that way.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# Typer's type labels, as the classic click help names them.
_KIND_NAMES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "file": "FILE", "dir": "DIR"}


class _Option(TyperOption):
    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        if self.metavar is not None:
            return self.metavar
        label = self.display_type(ctx).strip("<>").removeprefix("list[").removesuffix("]").removesuffix(" range")
        if "|" in label:
            return f"[{label}]"
        return _KIND_NAMES.get(label, label.upper())


class _Argument(TyperArgument):
    @property
    def display_name_raw(self) -> str:
        return self.metavar or (self.name or "").upper()

    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name column says it already

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return [name + ("..." if self.nargs != 1 else "")]


_PLAIN = {TyperOption: _Option, TyperArgument: _Argument}


class _PlainValues:
    """Gives a command's parameters (its help option included, made on demand) show1's help display."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            param.__class__ = _PLAIN.get(type(param), type(param))  # same fields, other display methods
        return params


class Command(_PlainValues, TyperCommand):
    pass


class Group(_PlainValues, TyperGroup):
    pass


class Typer(typer.Typer):
    """`typer.Typer` whose commands and groups print show1's help."""

    def __init__(self, **kwargs: Any):
        super().__init__(cls=Group, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return super().command(*args, cls=Command, **kwargs)
