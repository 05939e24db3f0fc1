"""A summary as a list of blocks, and its renderings: Markdown, HTML (self-contained) and
reStructuredText (the Snakemake report's front page). Text may use ``**bold**`` and ```code```.

Tables are pandas' renderings (:meth:`~pandas.DataFrame.to_markdown` through tabulate: a pipe table
for Markdown, a grid table for reStructuredText; :meth:`~pandas.DataFrame.to_html`) of cells that
the summary has already formatted as text."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["Document", "to_markdown", "to_html", "to_rst"]


@dataclass
class Document:
    """Blocks of a summary: ``("h", level, text)``, ``("p", text)``, ``("ul", [text, ...])``,
    ``("table", DataFrame)``, ``("img", path, alt)``. Text may use ``**bold**`` and ```code```."""

    blocks: list[tuple] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: Iterable[str]) -> None:
        items = list(items)
        if items:
            self.blocks.append(("ul", items))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", frame))

    def image(self, path: str, alt: str) -> None:
        self.blocks.append(("img", path, alt))

    def text(self) -> str:
        """All text of the document (headings, paragraphs, bullets, table cells), for searching."""
        parts = []
        for block in self.blocks:
            if block[0] == "h":
                parts.append(block[2])
            elif block[0] == "p":
                parts.append(block[1])
            elif block[0] == "ul":
                parts.extend(block[1])
            elif block[0] == "table":
                parts.append(block[1].to_string())
        return "\n".join(parts)


def _markdown_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _rendered(frame: pd.DataFrame, render) -> pd.DataFrame:
    """``frame`` with every cell and column name as text passed through ``render``."""
    cells = frame.astype(str).map(render)
    cells.columns = [render(str(column)) for column in frame.columns]
    return cells


def _table_text(frame: pd.DataFrame, render, tablefmt: str) -> str:
    # the cells are text already formatted to the digits the report prints; tabulate would read
    # "1.000" or "8.21e-03" as numbers and print them its own way
    return _rendered(frame, render).to_markdown(index=False, tablefmt=tablefmt, disable_numparse=True)


def to_markdown(document: Document) -> str:
    """The document as GitHub-flavoured Markdown."""
    lines: list[str] = []
    for block in document.blocks:
        kind = block[0]
        if kind == "h":
            lines += ["#" * block[1] + " " + block[2], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in block[1]] + [""]
        elif kind == "table":
            lines += [_table_text(block[1], _markdown_cell, "pipe"), ""]
        elif kind == "img":
            lines += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _rst_inline(text: str) -> str:
    # Markdown's `code` is reStructuredText's ``code``; **bold** is the same in both
    return re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", str(text))


def to_rst(document: Document) -> str:
    """The document as reStructuredText (the Snakemake report's front page)."""
    underline = {1: "=", 2: "-", 3: "~", 4: "^"}
    lines: list[str] = []
    for block in document.blocks:
        kind = block[0]
        if kind == "h":
            text = _rst_inline(block[2])
            lines += [text, underline.get(block[1], "^") * max(len(text), 4), ""]
        elif kind == "p":
            lines += [_rst_inline(block[1]), ""]
        elif kind == "ul":
            lines += [f"* {_rst_inline(item)}" for item in block[1]] + [""]
        elif kind == "table":  # a grid table: reStructuredText's own table syntax
            lines += [_table_text(block[1], lambda value: _rst_inline(_markdown_cell(value)), "grid"), ""]
        elif kind == "img":
            lines += [f"Figure: ``{block[1]}`` ({_rst_inline(block[2])})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _inline_html(text: str) -> str:
    escaped = html.escape(str(text), quote=False)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em auto; max-width: 70em;
       padding: 0 1em; line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td { font-variant-numeric: tabular-nums; }
code { background: #f3f3f3; padding: 0 0.2em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; } h3 { font-size: 1.05em; }
"""


def to_html(document: Document, title: str = "KAN scaling report") -> str:
    """The document as one self-contained HTML page (inline CSS; images as links)."""
    body: list[str] = []
    for block in document.blocks:
        kind = block[0]
        if kind == "h":
            level = min(int(block[1]), 6)
            body.append(f"<h{level}>{_inline_html(block[2])}</h{level}>")
        elif kind == "p":
            body.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            body.append(_rendered(block[1], _inline_html).to_html(index=False, escape=False, border=0))
        elif kind == "img":
            body.append(f'<p>Figure: <a href="{html.escape(block[1])}">{_inline_html(block[2])}</a></p>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
