"""Command-line options generated from the dataclasses and signatures that hold their defaults.

    add_options(parser, CollectJob, help={"model": "se_resnet20 | timm:NAME"})
    job = CollectJob(**option_values(args, CollectJob))

Each default is written once, where the library keeps it, and so is each help text where one is
written beside it (`Annotated[int, Help("epochs to train")]`, shown by the CLI, read by Python users
where the field is declared); the CLI adds the other help texts and the choices. A range is written
beside its default as `Annotated[int, Range(1)]`: dataclasses check their fields with
`check_fields(self)` in `__post_init__`, and the CLI checks a function's options with
`check_values(function, values)` before any work starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

from analysis.errors import OptionError

Source = type | Callable[..., Any]  # a dataclass type, or a function with keyword parameters


@dataclasses.dataclass(frozen=True)
class Range:
    """The closed range [low, high] an option's value must lie in (None: unbounded); None values pass."""

    low: float | None = None
    high: float | None = None

    def contains(self, value: Any) -> bool:
        """Whether `value` lies in the range (None and booleans always do)."""
        if value is None or isinstance(value, bool):
            return True
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    @property
    def wanted(self) -> str:
        """The range in words: "at least 1", "at most 9", "between 0 and 1"."""
        if self.high is None:
            return f"at least {self.low}"
        if self.low is None:
            return f"at most {self.high}"
        return f"between {self.low} and {self.high}"

    def check(self, name: str, value: Any, label: str | None = None) -> None:
        """OptionError naming the option as a user types it (or as `label` says), if `value` lies
        outside the range."""
        if not self.contains(value):
            flag = label or f"--{name.replace('_', '-')}"
            raise OptionError(f"{flag} must be {self.wanted}, not {value}.")


@dataclasses.dataclass(frozen=True)
class Help:
    """An option's help text, written once beside its field or keyword parameter."""

    text: str


def _help_of(annotation: Any) -> str | None:
    return next((extra.text for extra in getattr(annotation, "__metadata__", ()) if isinstance(extra, Help)), None)


def ranges(source: Source) -> dict[str, Range]:
    """The Range declared beside each field or keyword parameter of `source` that has one."""
    found = {}
    for name, annotation, _ in _parameters(source):
        for extra in getattr(annotation, "__metadata__", ()):
            if isinstance(extra, Range):
                found[name] = extra
    return found


def check_values(source: Source, values: dict[str, Any]) -> None:
    """OptionError for the first of `values` outside the Range that `source` declares for it."""
    for name, bounds in ranges(source).items():
        if name in values:
            bounds.check(name, values[name])


def check_fields(instance: Any) -> None:
    """check_values for a dataclass instance's own fields; call it from `__post_init__`."""
    check_values(type(instance), {f.name: getattr(instance, f.name) for f in dataclasses.fields(instance)})


def _parameters(source: Source) -> Iterator[tuple[str, Any, Any]]:
    """(name, annotation, default or inspect.Parameter.empty) of each field or keyword parameter."""
    hints = typing.get_type_hints(source, include_extras=True)
    if dataclasses.is_dataclass(source):
        for f in dataclasses.fields(source):
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                default = inspect.Parameter.empty
            yield f.name, hints[f.name], default
        return
    for p in inspect.signature(source).parameters.values():
        if p.kind is p.KEYWORD_ONLY:
            yield p.name, hints[p.name], p.default


def _parser_of(annotation: Any) -> Callable[[str], Any]:
    """The argparse `type` for an annotation: X | None is X; tuples and sequences are comma-separated."""
    if typing.get_origin(annotation) is Annotated:
        return _parser_of(annotation.__origin__)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _parser_of(args[0])
    origin = typing.get_origin(annotation)
    if origin in (tuple, Sequence, list):
        return _comma_separated(_parser_of(args[0]))
    return annotation if annotation in (int, float, str, Path) else str


_ITEMS = {int: "whole numbers", float: "numbers"}


def _comma_separated(item: Callable[[str], Any]) -> Callable[[str], tuple]:
    """The argparse `type` of a comma-separated list of `item`s, whose error names what it wants."""
    def comma_separated(text: str) -> tuple:
        try:
            return tuple(item(part) for part in text.split(",") if part)
        except ValueError:
            wanted = _ITEMS.get(item, "values")
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {wanted}") from None
    return comma_separated


def add_options(
    parser: argparse.ArgumentParser,
    source: Source,
    *,
    skip: Sequence[str] = (),
    only: Sequence[str] | None = None,
    help: dict[str, str] | None = None,
    choices: dict[str, Sequence[str]] | None = None,
) -> None:
    """One `--name` option per field of `source` (a dataclass) or keyword parameter (a function),
    all of them or `only` those, less `skip`. Its help text is the one written beside it (`Help`),
    else `help[name]`."""
    help, choices = help or {}, choices or {}
    for name, annotation, default in _parameters(source):
        if name in skip or (only is not None and name not in only):
            continue
        flag, text = f"--{name.replace('_', '-')}", _help_of(annotation) or help.get(name)
        text = text.replace("%", "%%") if text else text  # argparse expands % in help texts
        if annotation is bool:
            action = argparse.BooleanOptionalAction if default is True else "store_true"
            parser.add_argument(flag, action=action, default=default, help=text)
            continue
        required = default is inspect.Parameter.empty
        shown = None if required else ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(
            flag, type=_parser_of(annotation), required=required, default=None if required else default,
            choices=choices.get(name), help=f"{text or ''} (default: {shown})".strip() if not required else text,
        )


def option_values(args: argparse.Namespace, source: Source, *, skip: Sequence[str] = ()) -> dict[str, Any]:
    """The parsed values of `source`'s options present in `args`, to construct it or call it with."""
    return {name: getattr(args, name) for name, _, _ in _parameters(source) if name not in skip and hasattr(args, name)}
