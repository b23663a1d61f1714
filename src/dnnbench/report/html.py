"""The self-contained HTML page: Plotly's JavaScript inlined, figures as JSON, a sortable table in plain JS.

Escaping rules: every text that reaches HTML goes through `esc` (html.escape); every value embedded in a
<script> goes through `script_json`, which also escapes `<`, `>` and `&` so that no data can close the script
element or open a tag. Nothing is loaded from the network.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.utils import PlotlyJSONEncoder


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def script_json(value: Any) -> str:
    """JSON safe inside <script>: no `</script>`, no `<!--`, no tag can be formed from the data."""
    text = json.dumps(value, cls=PlotlyJSONEncoder, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


@dataclass
class FigureBlock:
    """One interactive figure with its static images and the notes on what it leaves out."""

    key: str  # unique; the element id is `fig-<key>`
    figure: go.Figure
    machine_id: str | None = None  # None: not tied to one machine
    images: Sequence[str] = ()  # file names next to index.html
    notes: Sequence[str] = ()  # plain text

    @property
    def element_id(self) -> str:
        return f"fig-{self.key}"


@dataclass
class Section:
    key: str
    title: str
    intro: str = ""  # plain text
    blocks: list[FigureBlock | str] = field(default_factory=list)  # str: HTML built with esc() already


def figure_html(block: FigureBlock) -> str:
    machine = f' data-machine="{esc(block.machine_id)}"' if block.machine_id else ""
    links = " · ".join(f'<a href="{esc(name)}">{esc(name.rsplit(".", 1)[-1].upper())}</a>' for name in block.images)
    notes = "".join(f"<li>{esc(note)}</li>" for note in block.notes)
    return (f'<figure class="figure"{machine}><div class="plot" id="{esc(block.element_id)}"></div>'
            f'<figcaption>{"Static image: " + links if links else ""}'
            f'{f"<ul class=notes>{notes}</ul>" if notes else ""}</figcaption></figure>')


def message_html(text: str, machine_id: str | None = None, kind: str = "note") -> str:
    machine = f' data-machine="{esc(machine_id)}"' if machine_id else ""
    return f'<p class="{esc(kind)}"{machine}>{esc(text)}</p>'


def table_html(columns: Sequence[tuple[str, str]], rows: Iterable[dict[str, Any]], table_id: str = "",
               css: str = "sortable") -> str:
    """A table; `columns` are (key, header) with header text, rows map keys to cell dicts or plain values.

    A cell dict may carry `text` (shown, escaped), `sort` (the sort key) and `cls`; a row may carry
    `_machine` (for the machine selector) and `_cls`.
    """
    head = "".join(f'<th scope="col" data-type="{"num" if key.startswith("#") else "text"}">{esc(header)}</th>'
                   for key, header in columns)
    body = []
    for row in rows:
        cells = []
        for key, _ in columns:
            cell = row.get(key, "")
            if isinstance(cell, dict):
                sort = f' data-sort="{esc(cell["sort"])}"' if cell.get("sort") is not None else ""
                cls = f' class="{esc(cell["cls"])}"' if cell.get("cls") else ""
                cells.append(f"<td{sort}{cls}>{esc(cell.get('text', ''))}</td>")
            else:
                cells.append(f"<td>{esc(cell)}</td>")
        machine = f' data-machine="{esc(row["_machine"])}"' if row.get("_machine") else ""
        cls = f' class="{esc(row["_cls"])}"' if row.get("_cls") else ""
        body.append(f"<tr{machine}{cls}>{''.join(cells)}</tr>")
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return (f'<div class="table-wrap"><table class="{esc(css)}"{ident}><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def definition_list(items: Iterable[tuple[str, object]]) -> str:
    return "<dl class=kv>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"


CSS = """
:root { --ink:#1d2330; --muted:#5b6476; --line:#d9dee7; --accent:#1f5fbf; --bad:#b3261e; --bg:#f6f7f9; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif; color:var(--ink);
       background:var(--bg); }
header { background:#fff; border-bottom:1px solid var(--line); padding:16px 28px; position:sticky; top:0; z-index:10; }
header h1 { margin:0 0 4px; font-size:20px; }
header .meta { color:var(--muted); font-size:13px; }
.controls { margin-top:8px; display:flex; gap:16px; align-items:center; flex-wrap:wrap; }
.controls select, .controls input { font:inherit; padding:3px 6px; border:1px solid var(--line); border-radius:4px; }
nav { margin-top:8px; font-size:13px; }
nav a { margin-right:14px; color:var(--accent); text-decoration:none; }
main { padding:8px 28px 40px; max-width:1500px; }
section { background:#fff; border:1px solid var(--line); border-radius:6px; padding:14px 20px; margin:18px 0;
          scroll-margin-top:150px; }
section h2 { margin:0 0 6px; font-size:17px; }
section > p.intro { color:var(--muted); margin:0 0 10px; }
.figure { margin:10px 0 18px; }
.plot { width:100%; min-height:420px; }
figcaption { font-size:12px; color:var(--muted); }
figcaption a { color:var(--accent); }
ul.notes { margin:4px 0 0; padding-left:18px; color:#7a4b00; }
p.note { color:#7a4b00; }
.table-wrap { overflow:auto; max-height:640px; border:1px solid var(--line); border-radius:4px; }
table { border-collapse:collapse; font-size:12.5px; width:100%; }
th, td { padding:4px 8px; border-bottom:1px solid #eef0f4; text-align:left; white-space:nowrap; }
thead th { position:sticky; top:0; background:#eef2f8; cursor:pointer; user-select:none; }
table.sortable th[aria-sort=ascending]::after { content:" \\25B2"; font-size:10px; }
table.sortable th[aria-sort=descending]::after { content:" \\25BC"; font-size:10px; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
tr.failed td { color:var(--bad); }
td.status-ok { color:#1b7f3b; }
.machines { display:grid; grid-template-columns:repeat(auto-fit,minmax(420px,1fr)); gap:14px; }
.machine-card { border:1px solid var(--line); border-radius:6px; padding:10px 14px; }
.machine-card h3 { margin:0 0 6px; font-size:15px; }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:2px 14px; margin:0; font-size:12.5px; }
dl.kv dt { color:var(--muted); }
dl.kv dd { margin:0; word-break:break-word; }
dl.method dt { font-weight:600; margin-top:10px; }
dl.method dd { margin:2px 0 0 0; max-width:1000px; }
.grid-table td { white-space:normal; vertical-align:top; min-width:180px; }
.js-errors { background:#fde7e7; color:var(--bad); border:1px solid var(--bad); padding:8px 12px; margin:10px 28px; }
.hidden-by-filter { display:none !important; }
code { background:#f0f2f5; padding:0 3px; border-radius:3px; }
"""

# Collects JavaScript errors from the very start and shows them: a report that failed to render says so.
ERROR_HOOK_JS = """
window.__reportErrors = [];
window.addEventListener('error', function (event) {
  window.__reportErrors.push(String(event.message || event));
  var box = document.getElementById('js-errors');
  if (box) {
    box.hidden = false;
    box.textContent = 'JavaScript error in this report: ' + window.__reportErrors.join(' | ');
  }
});
"""

PAGE_JS = """
(function () {
  var figures = JSON.parse(document.getElementById('figure-data').textContent);
  var config = {responsive: true, displaylogo: false, toImageButtonOptions: {format: 'svg', scale: 1}};
  Object.keys(figures).forEach(function (id) {
    var el = document.getElementById(id);
    if (el) { Plotly.newPlot(el, figures[id].data, figures[id].layout, config); }
  });

  var machineSelect = document.getElementById('machine-filter');
  var textFilter = document.getElementById('table-filter');
  function applyFilters() {
    var machine = machineSelect ? machineSelect.value : '';
    var text = textFilter ? textFilter.value.trim().toLowerCase() : '';
    document.querySelectorAll('[data-machine]').forEach(function (el) {
      var hide = machine !== '' && el.getAttribute('data-machine') !== machine;
      if (!hide && text && el.tagName === 'TR' && el.closest('#results')) {
        hide = el.textContent.toLowerCase().indexOf(text) === -1;
      }
      var wasHidden = el.classList.contains('hidden-by-filter');
      el.classList.toggle('hidden-by-filter', hide);
      if (wasHidden && !hide) {
        el.querySelectorAll('.js-plotly-plot').forEach(function (plot) { Plotly.Plots.resize(plot); });
      }
    });
    var shown = document.querySelectorAll('#results tbody tr:not(.hidden-by-filter)').length;
    var counter = document.getElementById('row-count');
    if (counter) { counter.textContent = shown + ' rows shown'; }
  }
  if (machineSelect) { machineSelect.addEventListener('change', applyFilters); }
  if (textFilter) { textFilter.addEventListener('input', applyFilters); }

  function sortKey(cell, numeric) {
    var raw = cell.hasAttribute('data-sort') ? cell.getAttribute('data-sort') : cell.textContent;
    if (!numeric) { return raw.toLowerCase(); }
    var value = parseFloat(raw);
    return isNaN(value) ? null : value;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var headers = table.querySelectorAll('thead th');
    headers.forEach(function (th, column) {
      th.addEventListener('click', function () {
        var ascending = th.getAttribute('aria-sort') !== 'ascending';
        headers.forEach(function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
        var numeric = th.getAttribute('data-type') === 'num';
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = sortKey(a.cells[column], numeric), y = sortKey(b.cells[column], numeric);
          if (x === y) { return 0; }
          if (x === null) { return 1; }   // missing values last, whatever the direction
          if (y === null) { return -1; }
          return (x < y ? -1 : 1) * (ascending ? 1 : -1);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  applyFilters();
})();
"""


def render_page(title: str, subtitle: str, machines: Sequence[tuple[str, str]], sections: Sequence[Section]) -> str:
    """The whole page; `machines` are (machine_id, label) for the selector."""
    figures: dict[str, Any] = {}
    body = []
    for section in sections:
        parts = []
        for block in section.blocks:
            if isinstance(block, FigureBlock):
                spec = block.figure.to_plotly_json()
                figures[block.element_id] = {"data": spec.get("data", []), "layout": spec.get("layout", {})}
                parts.append(figure_html(block))
            else:
                parts.append(block)
        intro = f'<p class="intro">{esc(section.intro)}</p>' if section.intro else ""
        body.append(f'<section id="{esc(section.key)}"><h2>{esc(section.title)}</h2>{intro}{"".join(parts)}</section>')
    options = "".join(f'<option value="{esc(mid)}">{esc(label)}</option>' for mid, label in machines)
    selector = (f'<label>Machine <select id="machine-filter"><option value="">All machines</option>{options}'
                f"</select></label>") if len(machines) > 1 else ""
    nav = "".join(f'<a href="#{esc(s.key)}">{esc(s.title)}</a>' for s in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="dnnbench">
<title>{esc(title)}</title>
<script>{ERROR_HOOK_JS}</script>
<style>{CSS}</style>
<script>{get_plotlyjs()}</script>
</head>
<body>
<header>
<h1>{esc(title)}</h1>
<div class="meta">{esc(subtitle)}</div>
<div class="controls">{selector}</div>
<nav>{nav}</nav>
</header>
<div id="js-errors" class="js-errors" hidden></div>
<main>
{"".join(body)}
</main>
<script type="application/json" id="figure-data">{script_json(figures)}</script>
<script>{PAGE_JS}</script>
</body>
</html>
"""
