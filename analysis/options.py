"""Command-line options generated from the dataclasses and signatures that hold their defaults.

    add_options(parser, CollectJob, help={"model": "se_resnet20 | timm:NAME"})
    job = CollectJob(**option_values(args, CollectJob))

Each default is written once, where the library keeps it; the CLI adds only help texts and choices.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

Source = type | Callable[..., Any]  # a dataclass type, or a function with keyword parameters


def _parameters(source: Source) -> Iterator[tuple[str, Any, Any]]:
    """(name, annotation, default or inspect.Parameter.empty) of each field or keyword parameter."""
    hints = typing.get_type_hints(source)
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
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _parser_of(args[0])
    origin = typing.get_origin(annotation)
    if origin in (tuple, Sequence, list):
        item = _parser_of(args[0])
        return lambda text: tuple(item(part) for part in text.split(",") if part)
    return annotation if annotation in (int, float, str, Path) else str


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
    all of them or `only` those, less `skip`."""
    help, choices = help or {}, choices or {}
    for name, annotation, default in _parameters(source):
        if name in skip or (only is not None and name not in only):
            continue
        flag, text = f"--{name.replace('_', '-')}", help.get(name)
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
