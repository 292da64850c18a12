"""The plots, as PNG and SVG, byte-stable: each group's headline score against trainable fraction (log axis,
Pareto frontier drawn as a staircase, 95% intervals as bars, reported rows hollow diamonds), and the repr-rank
cumulative singular-value curves. The untrained base (fraction 0) sits one decade left of the smallest trained
fraction, on a tick labelled "0 (base)"."""

from __future__ import annotations

import io
import math
from collections import Counter

import matplotlib
from matplotlib import rc_context
from matplotlib.figure import Figure

from vlm_peft_bench.methods.table import colour

STYLE = {"svg.hashsalt": "vlm-peft-bench", "svg.fonttype": "path", "font.family": "DejaVu Sans", "font.size": 9,
         "axes.titlesize": 9}
# The plots' bytes depend on matplotlib's version (its renderer changes between releases), so it is written into them:
# a rebuild is byte-identical under the same matplotlib.
RENDERER = f"vlm-peft-bench leaderboard (matplotlib {matplotlib.__version__})"
SVG_META = {"Date": None, "Creator": RENDERER}
PNG_META = {"Software": RENDERER}
DPI = 110


def floor_of(fractions: list[float]) -> float:
    """Where fraction 0 is drawn: one decade below the smallest positive fraction (1e-4 without any)."""
    positive = [f for f in fractions if f and f > 0]
    return 10.0 ** (math.floor(math.log10(min(positive))) - 1) if positive else 1e-4


def _percent_label(x: float) -> str:
    return f"{100 * x:.4g}%"


def _points(group: dict, rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        cell = row["cells"].get(group["id"])
        fraction = row["params"].get("plotted", row["params"]["fraction"])
        if cell is None or fraction is None:
            continue
        metric = cell["metrics"][group["headline"]]
        if metric["value"] is None:
            continue
        out.append({"row": row, "x": fraction, "y": metric["value"], "ci": metric.get("ci95"),
                    "pareto": cell["pareto"]})
    return out


def is_derived(row: dict) -> bool:
    """A row placed by derived (not trained) parameters: a steering vector."""
    return bool(row["params"].get("derived")) and not row["params"].get("trainable")


def _marker(row: dict, reported: bool) -> str:
    return "D" if reported else "s" if is_derived(row) else "o"


def _point_labels(points: list[dict], reported: bool) -> dict[str, str]:
    """Each point's label: its method, or, where several points of the panel share a method, its adapter's name
    (the card id before its `__base__task` suffix), so that five LoRA points are not five "lora"s."""
    methods = Counter(p["row"]["method"] for p in points)
    labels = {}
    for p in points:
        row = p["row"]
        name = row["method"]
        if methods[name] > 1 and row.get("adapter_id"):
            name = row["adapter_id"].split("__")[0]
        labels[row["id"]] = name + (" (reported)" if reported else "")
    return labels


def _scatter_panel(ax, group: dict, board: dict, rows: list[dict]) -> None:
    points = _points(group, rows)
    labels = _point_labels(points, group["kind"] == "reported")
    reported = group["kind"] == "reported"
    floor = floor_of([p["x"] for p in points])
    for p in points:
        p["px"] = p["x"] if p["x"] > 0 else floor
    for p in sorted(points, key=lambda p: (p["px"], p["row"]["id"])):
        c = colour(p["row"]["method"])
        if p["ci"] and None not in p["ci"]:
            ax.errorbar([p["px"]], [p["y"]], yerr=[[p["y"] - p["ci"][0]], [p["ci"][1] - p["y"]]], fmt="none",
                        ecolor=c, elinewidth=1, capsize=2, alpha=0.6)
        ax.scatter([p["px"]], [p["y"]], s=46 if p["pareto"] else 30, marker=_marker(p["row"], reported),
                   facecolors="none" if reported else c, edgecolors="black" if p["pareto"] else c,
                   linewidths=1.4 if p["pareto"] else 1.0, zorder=3)
        ax.annotate(labels[p["row"]["id"]], (p["px"], p["y"]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7, color=c)
    front = sorted((p for p in points if p["pareto"]), key=lambda p: (p["px"], p["y"]))
    if front:
        ax.step([p["px"] for p in front], [p["y"] for p in front], where="post", color="black", linewidth=1,
                linestyle="--", zorder=2, label="Pareto frontier")
    ax.set_xscale("log")
    xs = [p["px"] for p in points] or [floor]
    low = math.floor(math.log10(min(xs)))
    high = max(math.ceil(math.log10(max(xs))), low + 1)
    ticks = [10.0 ** e for e in range(low, high + 1)]
    has_base = any(p["x"] == 0 for p in points)
    ax.set_xticks(ticks, [("0 (base)" if has_base and t == floor else _percent_label(t)) for t in ticks])
    ax.set_xlim(10.0 ** (low - 0.3), 10.0 ** (high + 0.3))
    ax.minorticks_off()
    ax.set_xlabel("trainable (squares: derived) fraction of parameters (log scale)")
    ax.set_ylabel(group["headline"] + (" (as published)" if reported else ""))
    ax.set_title(f"{group['label']}\n{board['label']}" + (" — REPORTED, not measured" if reported else ""))
    ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
    if front:
        ax.legend(loc="best", fontsize=7, framealpha=0.8)


def _layout(n: int) -> tuple[int, int]:
    cols = min(3, max(1, n))
    return math.ceil(max(1, n) / cols), cols


def _save(fig: Figure) -> tuple[bytes, bytes]:
    png, svg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI, metadata=PNG_META)
    fig.savefig(svg, format="svg", metadata=SVG_META)
    return png.getvalue(), svg.getvalue()


def scatter_figure(doc: dict) -> tuple[bytes, bytes]:
    """(PNG bytes, SVG bytes) with one panel per group."""
    boards = {b["id"]: b for b in doc["boards"]}
    groups = doc["groups"]
    with rc_context(STYLE):
        rows_n, cols_n = _layout(len(groups))
        fig = Figure(figsize=(5.2 * cols_n, 4.2 * rows_n), layout="constrained")
        for index, group in enumerate(groups):
            ax = fig.add_subplot(rows_n, cols_n, index + 1)
            rows = [r for r in doc["rows"] if r["board"] == group["board"]]
            _scatter_panel(ax, group, boards[group["board"]], rows)
        if not groups:
            fig.text(0.5, 0.5, "no results", ha="center")
        return _save(fig)


def repr_figure(doc: dict) -> tuple[bytes, bytes]:
    """(PNG, SVG): per group with repr-rank data, each row's cumulative singular-value curve."""
    boards = {b["id"]: b for b in doc["boards"]}
    panels = [g for g in doc["groups"] if any((r["cells"].get(g["id"]) or {}).get("repr_rank") for r in doc["rows"])]
    with rc_context(STYLE):
        rows_n, cols_n = _layout(len(panels))
        fig = Figure(figsize=(5.2 * cols_n, 4.2 * rows_n), layout="constrained")
        for index, group in enumerate(panels):
            ax = fig.add_subplot(rows_n, cols_n, index + 1)
            for row in doc["rows"]:
                rr = (row["cells"].get(group["id"]) or {}).get("repr_rank")
                if not rr:
                    continue
                curve = rr["cumulative"]
                d = len(curve)
                ax.plot([k / d for k in range(d + 1)], [0.0, *curve], color=colour(row["method"]), linewidth=1.2,
                        label=f"{row['label']} ({rr['effective_rank_ratio']:.3f})")
            ax.axhline(0.9, color="black", linewidth=0.8, linestyle=":")
            ax.set_xlabel("fraction of dimensions k / d")
            ax.set_ylabel("cumulative share of singular values")
            ax.set_title(f"final-layer representations: {group['label']}\n{boards[group['board']]['label']}")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.grid(True, linewidth=0.4, alpha=0.5)
            ax.legend(loc="lower right", fontsize=6, frameon=False, title="effective rank ratio", title_fontsize=6)
        if not panels:
            fig.text(0.5, 0.5, "no repr-rank files among the results", ha="center")
        return _save(fig)


def sweep_figure(doc: dict) -> tuple[bytes, bytes]:
    """(PNG, SVG): one panel per sweep, as the VL-ReFT report plots them: test score with its 95% interval,
    training and held-out score against the swept setting, and the untrained base's test score as a band."""
    sweeps = doc.get("sweeps", [])
    with rc_context(STYLE):
        rows_n, cols_n = _layout(len(sweeps))
        fig = Figure(figsize=(5.2 * cols_n, 4.2 * rows_n), layout="constrained")
        for index, sweep in enumerate(sweeps):
            ax = fig.add_subplot(rows_n, cols_n, index + 1)
            points = sweep["points"]
            xs = [p["value"] for p in points]
            test = [p["test"] for p in points]
            ax.errorbar(xs, test, yerr=[[p["test"] - p["ci95"][0] for p in points],
                                        [p["ci95"][1] - p["test"] for p in points]],
                        color="#1f4e79", marker="o", markersize=4, linewidth=1.4, capsize=3,
                        label="test (95% interval)")
            for key, style, label in (("train", "--", "train (items trained on)"), ("held_out", ":", "held-out")):
                shown = [(p["value"], p[key]) for p in points if p[key] is not None]
                if shown:
                    ax.plot([x for x, _ in shown], [y for _, y in shown], linestyle=style, marker=".",
                            color="#7f7f7f" if key == "train" else "#2ca02c", linewidth=1.1, label=label)
            base = sweep.get("base_test")
            if base:
                ax.axhspan(base["ci95"][0], base["ci95"][1], color="#d62728", alpha=0.08, linewidth=0)
                ax.axhline(base["value"], color="#d62728", linewidth=1, label="untrained base (test)")
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel(sweep["axis_label"] + (f" of {sweep['layers_in_base']}" if sweep["axis"] == "lowest_layer"
                                                 and sweep.get("layers_in_base") else ""))
            ax.set_ylabel(sweep["metric"])
            ax.set_title(f"{sweep['recipe']} on {sweep['task']}: {sweep['metric']} against {sweep['axis_label']}\n"
                         f"base {sweep['base']}, seed {sweep['seed']}")
            ax.grid(True, linewidth=0.4, alpha=0.5)
            ax.legend(loc="best", fontsize=7, framealpha=0.8)
        if not sweeps:
            fig.text(0.5, 0.5, "no sweep files among the results (vlm-peft-bench sweep)", ha="center")
        return _save(fig)
