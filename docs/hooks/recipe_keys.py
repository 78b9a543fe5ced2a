"""The recipe key reference, generated from cnnlab/recipes/schema.py when the docs are built.

MkDocs runs this file as a hook (mkdocs.yml: `hooks:`). On the page that holds the marker line

    <!-- recipe-keys -->

it puts one table per TOML table of a recipe ([optimizer], [augment], ...): each key, what it
takes, its default, its limits and its one-line description, all read from the dataclasses and
the field metadata that `cnnlab.recipes.schema.build` checks recipe files against. So the
reference cannot drift from what cnnlab accepts. By hand:

    python docs/hooks/recipe_keys.py        # prints the Markdown
"""
from __future__ import annotations

import dataclasses
import typing

from cnnlab.recipes import schema

MARKER = "<!-- recipe-keys -->"
NOT_IN_FILES = {"recipe"}  # set from the file's name or path, never written in a file
LIMIT_WORDS = {"min": ">=", "max": "<=", "gt": ">", "lt": "<"}
FILE_KEYS = [  # keys of a recipe file that are not Recipe fields (cnnlab.recipes.FILE_ONLY)
    ("base", "a string", "none", "", "a shipped recipe's name or a path (relative to this file) to start from; "
     "this file's keys override it"),
]


def _default(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_default(v) for v in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _limits(metadata) -> str:
    return ", ".join(f"{LIMIT_WORDS[k]} {metadata[k]:g}" for k in LIMIT_WORDS if k in metadata)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def rows(cls, prefix: str = "", doc: str = "") -> list[tuple[str, str, list[tuple[str, str, str, str, str]]]]:
    """[(table name, description, [(key, type, default, limits, what it sets), ...]), ...] for cls.

    The first entry is cls's own keys (table name prefix, "" at the top); nested dataclasses
    follow as their own tables, depth first, in field order, described by their field's doc and
    their class docstring.
    """
    hints = typing.get_type_hints(cls)
    own, nested = [], []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            nested += rows(hint, f"{prefix}{f.name}.", f.metadata.get("doc", ""))
            continue
        if cls is schema.Recipe and f.name in NOT_IN_FILES:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        own.append((f.name, schema._describe(hint), _default(default), _limits(f.metadata),
                    f.metadata.get("doc", "")))
    return [(prefix.rstrip("."), _describe_table(cls, doc), own)] + nested


def _describe_table(cls, doc: str) -> str:
    """The field's doc, then the class docstring (dataclasses invent one from the signature: skipped)."""
    own = " ".join((cls.__doc__ or "").split())
    if own.startswith(cls.__name__ + "("):
        own = ""
    parts = [p.rstrip(".") for p in (doc, own) if p]
    return ". ".join(p[0].upper() + p[1:] for p in parts) + "." if parts else ""


def _table(title: str, doc: str, entries) -> list[str]:
    out = [f"### {title}", ""]
    if doc:
        out += [doc, ""]
    out += ["| key | takes | default | limits | what it sets |", "|---|---|---|---|---|"]
    out += [f"| `{k}` | {_cell(t)} | `{_cell(d)}` | {_cell(lim)} | {_cell(text)} |" for k, t, d, lim, text in entries]
    return out + [""]


def reference_markdown() -> str:
    """The whole reference: the top-level keys, each nested table, then the [measured] table."""
    lines = []
    for table, doc, entries in rows(schema.Recipe):
        if table == "":
            entries = entries + FILE_KEYS
        if entries:
            lines += _table("Top level" if table == "" else f"`[{table}]`", doc, entries)
    (_, doc, measured), = rows(schema.Measured)
    lines += _table("`[measured]`", "Shown by `cnnlab recipes`; it does not change training. " + doc, measured)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs hook: the marker line becomes the reference."""
    if MARKER in markdown:
        return markdown.replace(MARKER, reference_markdown())
    return markdown


if __name__ == "__main__":
    print(reference_markdown())
