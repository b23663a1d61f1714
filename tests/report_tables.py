"""The tables of a report's index.html as plain text rows: what the old-store fixture test compares
(the page also embeds figures and a generation time, which differ between runs)."""

from html.parser import HTMLParser
from pathlib import Path


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def report_tables(index_html: Path) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(Path(index_html).read_text(encoding="utf-8"))
    return parser.tables


def report_files(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir())
