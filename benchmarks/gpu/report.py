"""The printed report: the JSON's configurations, ratios, throughput against peak and agreement as tables."""

from __future__ import annotations

from benchmarks.gpu.sharing import sharing_lines


def _f(value, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def table(result: dict) -> str:
    s, m, mod = result["settings"], result["machine"], result["model"]
    lines = [f"{s['size']} model ({mod['params_total'] / 1e9:.3f} B params, {mod['image_tokens']} image tokens), "
             f"{s['dtype']}, random weights, on {m['device_name']} ({m['device']}); {s['items']} items x "
             f"{s['repeats_done']}/{s['repeats']} interleaved repeats, {s['new_tokens']} new tokens per item"
             + (" (stopped early: time budget)" if s["stopped_for_budget"] else ""), "",
             "| config | status | samples/s | new tokens/s | in generate s | weights MiB | peak MiB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, c in result["configs"].items():
        status = c["status"] if c["status"] == "ok" else f"{c['status']}: {c['reason']}"
        lines.append(f"| {name} | {status} | {_f(c.get('samples_per_s'))} | {_f(c.get('new_tokens_per_s'), '.1f')} | "
                     f"{_f(c.get('generate_s'), '.3f')} | {_f(c['weights_mib'], '.0f')} | {_f(c['peak_mib'], '.0f')} |")
    if result["memory_note"]:
        lines.append(f"({result['memory_note']})")
    lines += ["", "| ratio (side by side) | median | best pass | target | met |", "|---|---:|---:|---:|---|"]
    for r in result["ratios"].values():
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        extra = f" ({r['reason']})" if r.get("reason") else ""
        lines.append(f"| {r['what']}{extra} | {_f(r['ratio'], '.3f')} | {_f(r['ratio_best_pass'], '.3f')} | "
                     f"{r['target'] or '-'} | {met} |")
    p = result["peak"]
    lines += ["", f"peak: {_f(p['tflops'], '.0f')} TFLOP/s dense bf16 [{p['tflops_source']}], "
                  f"{_f(p['gbps'], '.0f')} GB/s [{p['gbps_source']}]",
              "| bare model | prompt tok | prefill tok/s | prefill TFLOP/s | % peak | decode tok/s | "
              "decode TFLOP/s | % peak | decode GB/s | % peak BW |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, r in result["throughput_vs_peak"].items():
        if "reason" in r:
            lines.append(f"| {key} | {r['reason']} |")
            continue

        def pct(v):
            return "-" if v is None else f"{100 * v:.2f}"

        lines.append(f"| {key} | {r['prompt_tokens_mean']:.0f} | {r['prefill_tokens_per_s']:.0f} | "
                     f"{_f(r['prefill_tflops'], '.3f')} | {pct(r['prefill_fraction_of_peak_tflops'])} | "
                     f"{_f(r.get('decode_tokens_per_s'), '.1f')} | {_f(r.get('decode_tflops'), '.4f')} | "
                     f"{pct(r['decode_fraction_of_peak_tflops'])} | {_f(r.get('decode_gbps'), '.1f')} | "
                     f"{pct(r['decode_fraction_of_peak_gbps'])} |")
    lines.append("")
    for key, g in result["greedy_identical"].items():
        if g["mismatches"] is None:
            lines.append(f"greedy {key}: not compared ({g['reason']})")
        else:
            lines.append(f"greedy {key} ({g['on']}): {g['of'] - g['mismatches']}/{g['of']} identical")
    short = [n for n, c in result["configs"].items() if c.get("every_row_full_length") is False]
    odd = [n for n, c in result["configs"].items() if c.get("only_ordinary_tokens") is False]
    lines.append("every row generated the full number of tokens" if not short
                 else f"rows ended early in: {', '.join(short)}")
    if odd:
        lines.append(f"special or out-of-tokenizer ids generated in: {', '.join(odd)}")
    if result.get("sharing"):
        lines += sharing_lines(result["sharing"])
    lines.append(f"model init {mod['init_s']:.1f} s; total {result['wall_s_total']:.0f} s")
    return "\n".join(lines)

