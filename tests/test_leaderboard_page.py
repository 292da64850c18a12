"""index.html in a real headless Chromium (Debian's `chromium`, driven by Playwright, background networking off),
opened from a file:
it renders, shows one table row and one plot point per row of the selected group, sorts, filters, switches
task, marks reported rows, and makes no request beyond the file itself."""

import pytest

from vlm_peft_bench.leaderboard.build import build

from .conftest import REPO
from .page_browser import chromium, why_not
from .test_leaderboard_factory import standard_inputs, write_run
from .test_leaderboard_sweeps import POINTS, write_sweep

SKIP = why_not()
if SKIP:
    print(f"test_leaderboard_page: skipped, {SKIP}")
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

COUNTS = "[" + ", ".join(f"document.querySelectorAll('{s}').length" for s in (
    "#board tbody tr", "#plot .point", "#plot .point > title", "#plot path.frontier")) + "]"
COLUMN = "[...document.querySelectorAll('#board tbody td[data-key=\"{key}\"]')].map(td => td.textContent)"
SELECT = "{{ const s = document.querySelector('#task'); s.value = '{}'; s.dispatchEvent(new Event('change')); }}"
ROW_IDS = "[...document.querySelectorAll('#board tbody tr')].map(tr => tr.dataset.row)"


def click(key: str) -> str:
    return f"document.querySelector('#board th[data-key=\"{key}\"]').click(); {ROW_IDS}"


@pytest.fixture(scope="module")
def open_tab():
    """One browser for the module (Playwright's synchronous API runs one at a time)."""
    with chromium() as opener:
        yield opener


@pytest.fixture(scope="module")
def page(tmp_path_factory, open_tab):
    root = tmp_path_factory.mktemp("page")
    results, zoo = standard_inputs(root, tasks=("cvbench_mini", "vqa_v2_mini"))
    write_run(results / "odd", "20260701_000000", adapter="<em onclick=x>odd&co", task="vqa_v2_mini")  # needs escaping
    write_sweep(results / "sweeps", "rank")
    out = root / "site"
    doc = build([results], out, zoo=zoo, reported=REPO / "leaderboard" / "reported.yaml")
    yield open_tab((out / "index.html").as_uri()), doc


def test_page_renders_one_row_and_one_point_per_adapter(page):
    tab, doc = page
    assert tab.evaluate("document.body.dataset.ready") == "1"
    group = doc["groups"][0]
    expected = [r["id"] for r in doc["rows"] if group["id"] in r["cells"]]
    rows, points, titles, frontiers = tab.evaluate(COUNTS)
    assert rows == points == titles == len(expected) == 5 and frontiers == 1
    plotted = tab.evaluate("[...document.querySelectorAll('#plot circle.point')].map(c => c.dataset.row)")
    assert sorted(plotted) == sorted(expected)
    pareto = tab.evaluate("[...document.querySelectorAll('#plot circle.point.pareto')].map(c => c.dataset.row)")
    assert sorted(pareto) == sorted(group["pareto"])
    hover = tab.evaluate("document.querySelector('#plot circle.point > title').textContent")
    assert "trainable:" in hover and "cvbench_combined:" in hover
    assert tab.evaluate("document.querySelector('#plot').textContent").count("0 (base)") == 1


def test_table_sorts_by_fraction_and_score(page):
    tab, doc = page
    fraction = {r["id"]: r["params"]["fraction"] for r in doc["rows"]}
    ascending = tab.evaluate(click("fraction"))
    assert [fraction[i] for i in ascending] == sorted(fraction[i] for i in ascending)
    assert tab.evaluate("document.querySelector('#board th[data-key=\"fraction\"]').getAttribute('aria-sort')") \
        == "ascending"
    descending = tab.evaluate(click("fraction"))
    assert descending == ascending[::-1] or [fraction[i] for i in descending] == sorted(
        (fraction[i] for i in ascending), reverse=True)
    group = doc["groups"][0]
    score = {r["id"]: r["cells"][group["id"]]["metrics"]["cvbench_combined"]["value"] for r in doc["rows"]
             if group["id"] in r["cells"]}
    by_score = tab.evaluate(click("m:cvbench_combined"))
    assert [score[i] for i in by_score] == sorted(score.values())
    shown = tab.evaluate(COLUMN.format(key="m:cvbench_combined"))
    assert all("(" in text for text in shown)  # every measured cvbench cell shows its 95% interval


def test_method_filter_hides_rows_and_points_together(page):
    tab, _ = page
    tab.evaluate("document.querySelector('#methods input[value=\"lora\"]').click()")
    rows, points, _, _ = tab.evaluate(COUNTS)
    assert rows == points == 4
    assert "lora" not in tab.evaluate(COLUMN.format(key="method"))
    tab.evaluate("document.querySelector('#methods input[value=\"lora\"]').click()")
    assert tab.evaluate(COUNTS)[:2] == [5, 5]


def test_task_filter_switches_groups_and_reported_rows_are_marked(page):
    tab, doc = page
    options = tab.evaluate("[...document.querySelectorAll('#task option')].map(o => o.value)")
    assert options == [g["id"] for g in doc["groups"]]
    vqa = next(g for g in doc["groups"] if g["task"] == "vqa_v2_mini")
    tab.evaluate(SELECT.format(vqa["id"]))
    rows, points, _, _ = tab.evaluate(COUNTS)
    assert (rows, points) == (6, 5)  # the odd adapter has no card: listed, its fraction unknown, not plotted
    assert "1 row(s) without a known fraction" in tab.evaluate("document.querySelector('#unplotted').textContent")
    assert "<em onclick=x>odd&co" in tab.evaluate(COLUMN.format(key="adapter"))  # shown as text, not markup
    assert tab.evaluate("document.querySelectorAll('#board tbody em').length") == 0
    reported = next(g for g in doc["groups"] if g["kind"] == "reported")
    tab.evaluate(SELECT.format(reported["id"]))
    rows, points, _, _ = tab.evaluate(COUNTS)
    assert rows == points == 3
    assert tab.evaluate("document.querySelectorAll('#board tbody tr.reported .tag').length") == 3
    assert tab.evaluate("document.querySelectorAll('#plot circle.point.reported').length") == 3
    assert "REPORTED, not measured here" in tab.evaluate("document.querySelector('#meta').textContent")
    assert "[REPORTED]" in tab.evaluate("document.querySelector('#plot circle.point > title').textContent")


SWEEP_COUNTS = "[" + ", ".join(f"document.querySelectorAll('{s}').length" for s in (
    "#sweeps .sweep", "#sweeps circle.point", "#sweeps circle.point > title", "#sweeps .sweep-table tr",
    "#sweeps polyline.line-train", "#sweeps polyline.line-held_out", "#sweeps line.base")) + "]"


def test_sweeps_are_drawn_and_tabulated_whatever_task_is_selected(page):
    tab, doc = page
    [sweep] = doc["sweeps"]
    n = len(POINTS)
    assert tab.evaluate(SWEEP_COUNTS) == [1, n, n, n + 1, 1, 1, 1]
    titles = tab.evaluate("[...document.querySelectorAll('#sweeps circle.point > title')].map(t => t.textContent)")
    assert titles[0].startswith("rank 1: test 0.440 (0.410-0.470), train 0.520, held-out 0.470")
    tab.evaluate(SELECT.format(doc["groups"][-1]["id"]))
    assert tab.evaluate(SWEEP_COUNTS)[:2] == [1, n]  # not tied to the selected group
    assert sweep["file"] in tab.evaluate("document.querySelector('#sweeps .sweep p').textContent")


def test_page_makes_no_request_and_raises_no_error(page):
    tab, _ = page
    assert all(url.startswith("file://") for url in tab.requests()) and len(tab.requests()) == 1
    assert tab.console_errors() == []


COMMITTED = REPO / "leaderboard" / "index.html"


@pytest.mark.skipif(not COMMITTED.is_file(), reason="no committed leaderboard yet")
def test_committed_page_shows_one_row_and_one_point_per_zoo_adapter(open_tab):
    import json

    doc = json.loads((REPO / "leaderboard" / "leaderboard.json").read_text())
    cards = sorted(p.stem for p in (REPO / "adapters_zoo").glob("*.yaml"))
    tab = open_tab(COMMITTED.as_uri())
    for group in (g for g in doc["groups"] if g["kind"] == "measured"):
        tab.evaluate(SELECT.format(group["id"]))
        rows, points, titles, frontiers = tab.evaluate(COUNTS)
        assert rows == points == titles == len(cards) + 1 and frontiers == 1, group["label"]
        assert sorted(tab.evaluate(COLUMN.format(key="adapter"))) == sorted([*cards, "untrained base"])
        steering = sum(bool(r.get("params", {}).get("derived")) for r in doc["rows"] if group["id"] in r["cells"])
        assert steering and tab.evaluate("document.querySelectorAll('#plot rect.point.derived').length") == steering
        with_repr = sum(bool(r["cells"].get(group["id"], {}).get("repr_rank")) for r in doc["rows"])
        assert tab.evaluate("document.querySelectorAll('#reprplot polyline.curve').length") == with_repr
    assert any(r["cells"][g]["repr_rank"] for r in doc["rows"] for g in r["cells"])  # the curves are shown
    sweeps, points = tab.evaluate(SWEEP_COUNTS)[:2]
    assert sweeps == len(doc["sweeps"]) and points == sum(len(s["points"]) for s in doc["sweeps"])
    assert len(tab.requests()) == 1 and tab.console_errors() == []
