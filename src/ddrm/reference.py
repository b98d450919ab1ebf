"""The reference pages generated from the code, so that they cannot drift from it.

- ``docs/cli-reference.md``: every ``ddrm`` command and option with its default, from the CLI's parser;
- the block ``keys`` of ``docs/configuration.md``: every config key with its type and default, from the schemas of
  ``ddrm.config``, and every baseline's parameters with their defaults.

Tests check that both are current, so an option or key added without its documentation fails the suite.
Regenerate them with::

    python -m ddrm.reference docs
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from .io import atomic_open

HEADER = """# Every command and option

Generated from the parser of the `ddrm` command (`python -m ddrm.reference docs`; a test keeps it
current). What the commands do, with examples: [cli.md](cli.md); every config key:
[configuration.md](configuration.md). The options most commands share are described once, first; each command
names those it takes.
"""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-command parsers of ``parser`` by name ({} for a leaf command)."""
    return {name: child for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            for name, child in a.choices.items()}


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("ddrm",)) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the command tree, depth first: ``(("ddrm",), root), (("ddrm", "data"), ...), ...``."""
    yield path, parser
    for name, child in _subcommands(parser).items():
        yield from commands(child, (*path, name))


def _cell(text: str) -> str:
    """One Markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _default(action: argparse.Action) -> str:
    """The default as a user would type it; empty where there is nothing to say (unset, a flag off, no list)."""
    value = action.default
    if value is None or value is argparse.SUPPRESS or isinstance(value, bool) or value == []:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return str(value)


def _rows(parser: argparse.ArgumentParser, skip: frozenset[str] = frozenset()) -> list[tuple[str, str, str]]:
    """(invocation, default, help) of each argument of ``parser`` but ``--help``, its sub-command slot and the
    options named in ``skip``."""
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or \
                skip.intersection(action.option_strings):
            continue
        text = action.help or ""
        if action.required and action.option_strings:
            text = f"required; {text}"
        rows.append((_invocation(action, formatter), _default(action), text))
    return rows


def _invocation(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    """``--output DIR, -o DIR`` style, the same on every Python (argparse's own changed in 3.13)."""
    default = action.dest.upper() if action.option_strings else action.dest  # as argparse's help names them
    metavar = formatter._format_args(action, default) if action.nargs != 0 else ""
    if not action.option_strings:
        return metavar
    return ", ".join(f"{o} {metavar}".strip() for o in action.option_strings)


def _table(rows: list[tuple[str, str, str]]) -> list[str]:
    if not rows:
        return []
    return ["| argument | default | what it does |", "|---|---|---|",
            *(f"| `{_cell(inv)}` | {_cell(d)} | {_cell(h)} |" for inv, d, h in rows), ""]


def render(parser: argparse.ArgumentParser, shared: argparse.ArgumentParser | None = None) -> str:
    """The Markdown page: the ``shared`` options once, then per command its usage line, what it does, which shared
    options it takes and a table of its own arguments."""
    common = frozenset(o for a in (shared._actions if shared is not None else []) for o in a.option_strings)
    out = [HEADER]
    if shared is not None:
        out += ["## Options most commands take\n", *_table(_rows(shared))]
    for path, sub in commands(parser):
        out.append(f"## `{' '.join(path)}`\n")
        if sub.description:
            out.append(f"{sub.description}\n")
        positionals = [_invocation(a, sub._get_formatter()) for a in sub._actions
                       if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
        usage = " ".join([*path, "[options]", *(["COMMAND ..."] if _subcommands(sub) else []), *positionals])
        out.append(f"```\n{usage}\n```\n")
        taken = [o for a in sub._actions for o in a.option_strings if o in common and o.startswith("--")]
        if taken:
            out.append(f"Shared options: {', '.join(f'`{o}`' for o in taken)}.\n")
        out += _table(_rows(sub, common))
    return "\n".join(out)


def _type(hint: Any) -> str:
    """A type hint in words: ``int``, ``float or null``, ``list of int``, ``mean / normalized_sum``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return " / ".join(_value(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        kinds = [_type(a) for a in args if a is not type(None)]
        return " or ".join(kinds + (["null"] if type(None) in args else []))
    if origin in (list, tuple, Sequence):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"{len(args)} x {_type(args[0])}" if len(set(args)) == 1 else ", ".join(map(_type, args))
        return f"list of {_type(args[0])}" if args else "list"
    return getattr(hint, "__name__", str(hint))


def _value(value: Any) -> str:
    """A value as it is written in a YAML config."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def _keys(cls: type, prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(dotted key, type, default) of every field of dataclass ``cls``, nested dataclasses flattened."""
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            yield from _keys(type(value), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", _type(hints[f.name]), _value(value)


def _key_table(rows: Sequence[tuple[str, ...]], head: Sequence[str]) -> list[str]:
    return [f"| {' | '.join(head)} |", "|" + "---|" * len(head),
            *(f"| `{_cell(r[0])}` | " + " | ".join(_cell(c) for c in r[1:]) + " |" for r in rows), ""]


def config_keys() -> str:
    """The Markdown block of every config key: the files of ``ddrm pretrain`` / ``ddrm train``, each backbone's
    own backend options and every baseline's parameters."""
    from .backends.registry import backbones
    from .baselines import BASELINES
    from .config.backbones import BackendConfig
    from .config.runs import PretrainConfig, TrainRunConfig

    pretrain = {k: (t, d) for k, t, d in _keys(PretrainConfig)}
    train = {k: (t, d) for k, t, d in _keys(TrainRunConfig)}
    common = {f.name for f in dataclasses.fields(BackendConfig)}
    rows = []
    for key in dict.fromkeys([*train, *pretrain]):  # train's order, then what only pretrain has
        if key.startswith("backend.") and key.removeprefix("backend.") not in common:
            continue  # the default backbone's own options: in the backbones' table
        where = "pretrain, train" if key in train and key in pretrain else "train" if key in train else "pretrain"
        kind, default = train[key] if key in train else pretrain[key]
        if key in train and key in pretrain and train[key] != pretrain[key]:
            default = f"{train[key][1]} (train), {pretrain[key][1]} (pretrain)"
        if key == "backend.layers":
            default = "the backbone's (below)"
        rows.append((key, kind, default, where))
    out = ["Generated from the schemas (`python -m ddrm.reference docs`; a test keeps it current). The last column "
           "names the commands whose files have the key: in a `ddrm train` file `pretrain` is the backend's "
           "training (when the run trains it) and `train` is DDRM's; in a `ddrm pretrain` file `train` is the "
           "backend's.", "",
           *_key_table(rows, ("key", "type", "default", "ddrm command"))]
    own = []
    for name, entry in backbones().items():
        hints = typing.get_type_hints(entry.config)
        default = entry.config()
        extra = [f"`{f.name}` ({_type(hints[f.name])}, {_value(getattr(default, f.name))})"
                 for f in dataclasses.fields(entry.config) if f.init and f.name not in common]
        own.append((name, str(default.layers), ", ".join(extra) or "-"))
    out += ["Each backbone's own `backend` options (the common ones are in the table above):", "",
            *_key_table(own, ("backend.name", "default layers", "its own options (type, default)"))]
    params = []
    for name, cls in BASELINES.items():
        sig = inspect.signature(cls.__init__).parameters.values()
        params.append((name, ", ".join(f"`{p.name}` {_value(p.default)}" for p in sig if p.name != "self") or "-"))
    out += ["`ddrm baseline NAME` takes these parameters (`--set reg=500`, or a section named after the baseline "
            "in its config: `ease: {reg: 500}`), with these defaults:", "",
            *_key_table(params, ("baseline", "parameters (default)"))]
    return "\n".join(out)


def write(docs: Path) -> list[Path]:
    """Write ``docs/cli-reference.md`` and the ``keys`` block of ``docs/configuration.md`` (atomically)."""
    from .cli import build_parser, shared_options
    from .experiments.results import splice

    cli_page, conf = docs / "cli-reference.md", docs / "configuration.md"
    text = splice(conf.read_text(encoding="utf-8") if conf.exists() else "", "keys", config_keys(),
                  "Every key with its type and default", where=str(conf))
    for path, body in ((cli_page, render(build_parser(), shared_options())), (conf, text)):
        with atomic_open(path) as f:
            f.write(body)
    return [cli_page, conf]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ddrm.reference DOCS_DIR``: write the generated pages into DOCS_DIR (see :func:`write`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python -m ddrm.reference DOCS_DIR (an existing folder, e.g. docs)", file=sys.stderr)
        return 2
    for path in write(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
