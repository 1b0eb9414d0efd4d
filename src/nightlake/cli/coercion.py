"""Plain option values (str, int, float, bool, Path, lists of them, tuples of str) converted
without pydantic.

typer converts every option value through a pydantic ``TypeAdapter`` built when the command
runs, and importing pydantic is the largest part of ``nightlake sql``'s start. Every
nightlake option is a plain str, int, float, bool or Path with typer's default checks, which need
no schema: :func:`use_plain_coercion` gives each such parameter of a command a converter that
handles the values whose meaning is beyond doubt (a decimal integer, a plain Path) and hands
anything else to typer's own converter, so odd input gets typer's very answer and message.
Parameters with constraints (ranges, choices, ``exists=True``, a parser, …) keep typer's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer._coercion import RuntimeParam, build_runtime_param
from typer._param_types import coerce_cli_path
from typer.models import ParameterInfo

_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]{0,15})(?:\.[0-9]{1,15})?")
#: typer's defaults for the checks of a parameter; one that sets any other is left to typer
_DEFAULTS = ParameterInfo()
_CHECKS = (
    "parser",
    "path_type",
    "exists",
    "file_okay",
    "dir_okay",
    "writable",
    "readable",
    "resolve_path",
    "allow_dash",
    "min",
    "max",
    "clamp",
    "formats",
    "mode",
    "encoding",
    "errors",
    "lazy",
    "atomic",
)
_LEAVES = (str, int, float, bool, Path)
_UNSURE = object()


def use_plain_coercion(command, ctx) -> None:
    """Give the plain parameters of ``command`` (a typer click command; ``ctx`` the context
    it runs in or under), ``--help`` included, the converter here."""
    for param in command.get_params(ctx):
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", True) is not None:
            continue
        leaf = _plain_leaf(descriptor)
        if leaf is not None:
            param._runtime_param = PlainParam(
                descriptor.parameter_info, descriptor.annotation, leaf, descriptor.is_list
            )


def _plain_leaf(descriptor) -> type | None:
    """The leaf type of a plain parameter (``list[str]`` → ``str``), or None."""
    info = descriptor.parameter_info
    if any(getattr(info, k, None) != getattr(_DEFAULTS, k, None) for k in _CHECKS):
        return None
    annotation = descriptor.annotation
    if descriptor.is_tuple:  # a fixed number of strings (--diff A B)
        args = getattr(annotation, "__args__", ())
        return tuple if args and all(a is str for a in args) else None
    if descriptor.is_list:
        args = getattr(annotation, "__args__", ())
        annotation = args[0] if len(args) == 1 else None
    return annotation if annotation in _LEAVES else None


@dataclass(frozen=True)
class PlainParam(RuntimeParam):
    """A converter for one plain parameter; typer's own takes what it is unsure of."""

    leaf: type
    is_list: bool

    def _coerce_value(self, value: Any, param, ctx) -> Any:
        if self.leaf is tuple:
            arity = len(self.annotation.__args__)
            if isinstance(value, (list, tuple)) and len(value) == arity:
                if all(type(item) is str for item in value):
                    return tuple(value)
            return build_runtime_param(param.type_descriptor)._coerce_value(value, param, ctx)
        if self.is_list:
            items = value if isinstance(value, (list, tuple)) else [value]
            done = [self._leaf(item, param, ctx) for item in items]
        else:
            done = self._leaf(value, param, ctx)
        if done is _UNSURE or (self.is_list and _UNSURE in done):
            return build_runtime_param(param.type_descriptor)._coerce_value(value, param, ctx)
        return done

    def _leaf(self, value: Any, param, ctx) -> Any:
        if type(value) is self.leaf and self.leaf is not Path:  # a default, already typed
            return value
        if self.leaf is float and type(value) is int:  # a float option's default written 30
            return float(value)
        if self.leaf is Path and isinstance(value, Path):
            return coerce_cli_path(value, self.parameter_info, path_type=Path, param=param, ctx=ctx)
        if not isinstance(value, str) or self.leaf is bool:
            return _UNSURE
        if self.leaf is str:
            return value
        if self.leaf is int:
            return int(value) if _INT.fullmatch(value) else _UNSURE
        if self.leaf is float:
            return float(value) if _FLOAT.fullmatch(value) else _UNSURE
        if not value or "\0" in value:  # Path: typer decides about "" and NUL
            return _UNSURE
        # the default checks of a Path (readable when it exists), with typer's messages
        return coerce_cli_path(
            Path(value), self.parameter_info, path_type=Path, param=param, ctx=ctx
        )
