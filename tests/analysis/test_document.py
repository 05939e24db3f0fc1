"""kanlib.analysis.document: one document rendered as Markdown, HTML and reStructuredText, each read
back by an independent parser (markdown-it, html.parser, docutils)."""

from __future__ import annotations

from html.parser import HTMLParser

import docutils.core
import docutils.nodes
import pandas as pd
from markdown_it import MarkdownIt

from kanlib.analysis.document import Document, to_html, to_markdown, to_rst

# cells a table of the report may hold: a pipe, markup characters, numbers as text that a
# number parser would reprint ("1.000" as 1, "8.21e-03" as 0.00821), an empty cell, inline markup
CELLS = pd.DataFrame(
    {
        "N": ["100", "3000"],
        "a|b": ["<3>", "x | y"],
        "R²": ["1.000", "n/a"],
        "RMSE": ["8.21e-03", ""],
        "α [CI]": ["**4.12** [4.03, 4.22]", "`code`"],
    }
)
SHOWN = [["N", "a|b", "R²", "RMSE", "α [CI]"], ["100", "<3>", "1.000", "8.21e-03", "4.12 [4.03, 4.22]"]]
SHOWN += [["3000", "x | y", "n/a", "", "code"]]


class _Cells(HTMLParser):
    """The text of every th/td of an HTML page, row by row."""

    def __init__(self):
        super().__init__()
        self.rows, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def html_cells(page: str) -> list[list[str]]:
    parser = _Cells()
    parser.feed(page)
    return parser.rows


def document() -> Document:
    document = Document()
    document.heading(1, "Title `x`")
    document.paragraph("**bold** a < b | c")
    document.bullets(["one", "two"])
    document.table(CELLS)
    document.image("report/f.png", "a figure")
    return document


def test_markdown_table_reads_back_cell_for_cell():
    markdown = to_markdown(document())
    assert markdown.splitlines()[:2] == ["# Title `x`", ""]
    assert "- one\n- two" in markdown and "![a figure](report/f.png)" in markdown
    assert html_cells(MarkdownIt("commonmark").enable("table").render(markdown)) == SHOWN


def test_html_page_and_its_table():
    page = to_html(document(), "T")
    assert page.startswith("<!DOCTYPE html>") and "<title>T</title>" in page
    assert "<h1>Title <code>x</code></h1>" in page and "<strong>bold</strong> a &lt; b | c" in page
    assert '<a href="report/f.png">a figure</a>' in page and "<strong>4.12</strong>" in page
    assert html_cells(page) == SHOWN


def test_restructuredtext_table_reads_back_cell_for_cell():
    tree = docutils.core.publish_doctree(
        to_rst(document()), settings_overrides={"report_level": 1, "halt_level": 5, "warning_stream": False}
    )
    messages = list(tree.findall(docutils.nodes.system_message))
    assert not messages, [m.astext() for m in messages]
    (table,) = tree.findall(docutils.nodes.table)
    rows = [
        [entry.astext() for entry in row.findall(docutils.nodes.entry)] for row in table.findall(docutils.nodes.row)
    ]
    assert rows == SHOWN
