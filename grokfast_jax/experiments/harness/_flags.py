"""Command-line flags from a task's config dataclass.

Every field of a task's config is a flag (``--field-name``) unless its
metadata says ``cli=False``; :func:`option` attaches the help text, another
flag name, aliases, choices or a parser. Flags default to None ("not given"):
the task's ``make_config`` applies its defaults, so options left out keep,
for instance, the chosen filter's paper setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence


def option(
  default: Any = dataclasses.MISSING,
  help: str = "",
  *,
  flag: Optional[str] = None,
  aliases: Sequence[str] = (),
  choices: Optional[Iterable[Any]] = None,
  parse: Optional[Callable[[str], Any]] = None,
  metavar: Optional[str] = None,
  group: Optional[str] = None,
  cli: bool = True,
  default_factory: Any = dataclasses.MISSING,
) -> Any:
  """A dataclass field that is also a command-line flag.

  Args:
    default: the field's default.
    help: the flag's help text.
    flag: the flag's name (default ``--`` + the field name with dashes).
    aliases: other spellings kept for old command lines.
    choices: allowed values.
    parse: converts the flag's text (default: from the field's type).
    metavar: the value's name in the help.
    group: the help section.
    cli: False keeps the field off the command line.
    default_factory: as in :func:`dataclasses.field`.

  Returns:
    A :func:`dataclasses.field`.
  """
  metadata = {
    "help": help,
    "flag": flag,
    "aliases": tuple(aliases),
    "choices": None if choices is None else tuple(choices),
    "parse": parse,
    "metavar": metavar,
    "group": group,
    "cli": cli,
  }
  if default_factory is not dataclasses.MISSING:
    return dataclasses.field(default_factory=default_factory, metadata=metadata)
  return dataclasses.field(default=default, metadata=metadata)


def flag_name(field: dataclasses.Field) -> str:
  """The flag of a config field, e.g. ``--window-size``."""
  return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _unwrap_optional(tp: Any) -> Any:
  origin = typing.get_origin(tp)
  if origin in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if len(args) == 1:
      return args[0]
  return tp


def _int_list(text: str) -> tuple[int, ...]:
  try:
    return tuple(int(t) for t in text.split(",") if t.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"expected comma-separated ints, got {text!r}"
    ) from None


def _parser_for(tp: Any) -> Callable[[str], Any]:
  tp = _unwrap_optional(tp)
  if typing.get_origin(tp) is tuple:
    return _int_list
  if tp in (int, float, str):
    return tp
  return str


def cli_fields(config_class: type) -> list[dataclasses.Field]:
  """The fields of `config_class` that are flags."""
  return [
    f for f in dataclasses.fields(config_class) if f.metadata.get("cli", True)
  ]


def add_config_flags(
  parser: argparse.ArgumentParser,
  config_class: type,
  *,
  skip: Iterable[str] = (),
  choices: Optional[Mapping[str, Sequence[Any]]] = None,
) -> None:
  """Adds one flag per field of `config_class` (default None: not given).

  Args:
    parser: the subcommand's parser.
    config_class: the task's config dataclass.
    skip: fields to leave out (the harness's own flags, say).
    choices: field -> allowed values, overriding the field's own (e.g. a
      comparison takes fewer filters).
  """
  hints = typing.get_type_hints(config_class)
  groups: dict[str, Any] = {}
  for field in cli_fields(config_class):
    if field.name in skip:
      continue
    meta = field.metadata
    target = parser
    if meta.get("group"):
      target = groups.setdefault(
        meta["group"], parser.add_argument_group(meta["group"])
      )
    names = [flag_name(field), *meta.get("aliases", ())]
    tp = _unwrap_optional(hints[field.name])
    allowed = (choices or {}).get(field.name, meta.get("choices"))
    kwargs: dict[str, Any] = {
      "dest": field.name,
      "default": None,
      "help": meta.get("help") or None,
    }
    if tp is bool and meta.get("parse") is None:
      target.add_argument(*names, action="store_true", **kwargs)
      continue
    kwargs["type"] = meta.get("parse") or _parser_for(hints[field.name])
    if allowed is not None:
      kwargs["choices"] = allowed
    if meta.get("metavar"):
      kwargs["metavar"] = meta["metavar"]
    target.add_argument(*names, **kwargs)


def given_settings(
  args: argparse.Namespace, config_class: type
) -> dict[str, Any]:
  """The config fields the user gave on the command line (not None)."""
  return {
    f.name: getattr(args, f.name)
    for f in cli_fields(config_class)
    if getattr(args, f.name, None) is not None
  }
