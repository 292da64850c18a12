"""index.html: one self-contained file (inline CSS, JS and data; a Content-Security-Policy that forbids any
fetch), openable from disk with no network. A task selector and method filters; a table that sorts by any
column; the selected group's scatter (log fraction axis, Pareto staircase, one point per visible row, hover
details in a tooltip and in each point's SVG <title>). Reported rows are hollow, dashed and labelled."""

from __future__ import annotations

import json
from pathlib import Path

from vlm_peft_bench.methods.table import OTHER_COLOUR, colours

ASSETS = Path(__file__).resolve().parent / "web"  # page.html, page.css, page.js

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
       "base-uri 'none'; form-action 'none'")


def _embed(doc: dict) -> str:
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(doc: dict) -> str:
    """The page: the HTML skeleton with its stylesheet, script and the document inlined."""
    html, css, js = (read_text(name) for name in ("page.html", "page.css", "page.js"))
    js = js.replace("__COLOURS__", json.dumps(colours(), separators=(",", ":"))).replace(
        "__OTHER_COLOUR__", json.dumps(OTHER_COLOUR))
    return (html.replace("__CSP__", CSP).replace("__CSS__", css.rstrip("\n"))
            .replace("__JS__", js.rstrip("\n")).replace("__DATA__", _embed(doc)))


def read_text(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")
