"""Dataclass configs, YAML load/dump and dotted ``key=value`` overrides that reject unknown keys.

Layering (lowest to highest priority): built-in defaults < YAML file < ``--set a.b=c`` / Python dict.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ..errors import ConfigError

T = TypeVar("T")


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]"]`` -> ``{"a": {"b": 1}, "c": [1, 2]}``; values are parsed as YAML scalars/lists."""
    pairs: list[tuple[str, Any]] = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value.")
        key, raw = item.split("=", 1)
        if not key.strip() or any(not part for part in key.strip().split(".")):
            raise ConfigError(f"override {item!r} has an empty key.")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        pairs.append((key.strip(), value))
    return nest(pairs)


def nest(pairs: Iterable[tuple[str, Any]] | Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys with their values -> a nested dict: ``{"a.b": 1, "c": 2}`` -> ``{"a": {"b": 1}, "c": 2}``."""
    out: dict[str, Any] = {}
    for key, value in (pairs.items() if isinstance(pairs, Mapping) else pairs):
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"config key {key!r} has an empty part.")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with another override of {part!r}.")
        node[parts[-1]] = value
    return out


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        return tp, type(None) in typing.get_args(tp)
    return tp, False


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against the type hint ``tp`` (bool, int, float, str, Literal, optional, lists, tuples and
    sequences of those, dataclasses, dicts) and converted where that is lossless; ConfigError names ``where``."""
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key {where!r} cannot be null.")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {where!r} must be a mapping.")
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {where!r} must be true or false, got {value!r}.")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {where!r} must be an integer, got {value!r}.")
        return value
    if tp is float:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads "5e-3" (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key {where!r} must be a number, got {value!r}.")
        return float(value)
    if tp is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"config key {where!r} must be a string, got {value!r}.")
        return str(value)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(map(str, typing.get_args(tp)))
            raise ConfigError(f"config key {where!r} must be one of {choices}, got {value!r}.")
        return value
    if origin in (tuple, list, collections.abc.Sequence):
        if not isinstance(value, list | tuple):
            value = [value]
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [coerce(v, inner, f"{where}[{k}]") if inner is not Any else v for k, v in enumerate(value)]
        if origin is tuple and len(args) > 1 and args[1] is not Ellipsis:
            if len(items) != len(args):
                raise ConfigError(f"config key {where!r} must have {len(args)} values, got {len(items)}.")
            items = [coerce(v, a, f"{where}[{k}]") for k, (v, a) in enumerate(zip(items, args, strict=True))]
        return tuple(items) if origin is tuple else list(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key {where!r} must be a mapping.")
        return dict(value)
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) dict; unknown keys and wrong types raise ConfigError.

    A class with a ``resolve_variant(data) -> (subclass, data)`` classmethod picks the subclass to build from the
    data itself (the backbone configs: ``backend.name`` chooses the class and so the keys allowed).
    """
    resolve = getattr(cls, "resolve_variant", None)
    if callable(resolve):
        cls, data = resolve(data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"unknown config key {key!r}; known keys here: {', '.join(sorted(names))}.")
    kwargs = {k: coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    obj = cls(**kwargs)  # missing keys take the dataclass defaults (and whatever its __post_init__ derives)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict (tuples become lists), for YAML/JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping; errors name the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc}).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{p}{line}: invalid YAML.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a config file must contain a mapping of keys to values.")
    return data


def build_config(cls: type[T], file: str | os.PathLike[str] | None = None,
                 overrides: Iterable[str] | Mapping[str, Any] = ()) -> T:
    """Defaults < ``file`` < ``overrides`` (dotted ``key=value`` strings or a nested dict)."""
    data: dict[str, Any] = load_yaml(file) if file else {}
    upd = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)
    return from_dict(cls, deep_merge(data, upd))


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)
