"""The reference of every ``ddrm`` command and option, as Markdown, rendered from the CLI's own parser.

``docs/cli-reference.md`` is this module's output; a test checks that it is current, so an option added to the
parser without its page fails the suite. Regenerate it with::

    python -m ddrm.cli_reference docs/cli-reference.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence

from .io import atomic_open

HEADER = """# Every command and option

Generated from the parser of the `ddrm` command (`python -m ddrm.cli_reference docs/cli-reference.md`; a test
keeps it current). What the commands do, with examples: [cli.md](cli.md); every config key:
[configuration.md](configuration.md). The options most commands share are described once, first; each command
names those it takes.
"""


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("ddrm",)) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the command tree, depth first: ``(("ddrm",), root), (("ddrm", "data"), ...), ...``."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
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
        rows.append((formatter._format_action_invocation(action), _default(action), text))
    return rows


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
        usage = " ".join(sub.format_usage().removeprefix("usage: ").split())
        out.append(f"```\n{usage}\n```\n")
        taken = [o for a in sub._actions for o in a.option_strings if o in common and o.startswith("--")]
        if taken:
            out.append(f"Shared options: {', '.join(f'`{o}`' for o in taken)}.\n")
        out += _table(_rows(sub, common))
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ddrm.cli_reference [FILE]``: write the page to FILE (atomically), or print it."""
    from .cli import build_parser, shared_options

    args = list(sys.argv[1:] if argv is None else argv)
    text = render(build_parser(), shared_options())
    if not args:
        sys.stdout.write(text)
        return 0
    with atomic_open(args[0]) as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
