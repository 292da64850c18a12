"""The FLOP and byte model of one prompt and one generated token, counted from the model's own parameters, and the
measured throughput of the bare model set against the card's peak (`roofline`)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.gpu.measure import Measured


def flop_model(model, config) -> dict:
    """Parameter counts by part (from the model's own tensors) and the per-token FLOP formulas' inputs."""
    parts = {"vision": 0, "vision_position_table": 0, "projector": 0, "lm_embedding": 0, "lm_head": 0, "lm_layers": 0}
    for name, p in model.named_parameters():
        if "vision_tower" in name:
            parts["vision_position_table" if "position_embedding" in name else "vision"] += p.numel()
        elif "multi_modal_projector" in name:
            parts["projector"] += p.numel()
        elif "lm_head" in name:
            parts["lm_head"] += p.numel()
        elif "embed_tokens" in name:
            parts["lm_embedding"] += p.numel()
        else:
            parts["lm_layers"] += p.numel()
    vc, tc = config.vision_config, config.text_config
    return {"params": parts, "params_total": sum(parts.values()),
            "n_patches": (vc.image_size // vc.patch_size) ** 2, "vision_layers": vc.num_hidden_layers,
            "vision_hidden": vc.hidden_size, "text_layers": tc.num_hidden_layers, "text_hidden": tc.hidden_size,
            "kv_dim": tc.num_key_value_heads * (tc.hidden_size // tc.num_attention_heads)}


def prefill_flops(fm: dict, prompt_len: int) -> float:
    """Useful forward FLOPs of one row's prefill: vision tower + projector on its image's patches, the decoder on
    every prompt token (image tokens included; causal attention), the lm_head on the last position only (what
    generate asks for). 2 FLOPs per multiply-add; padding not counted."""
    p, n = fm["params"], fm["n_patches"]
    vision = 2 * p["vision"] * n + 4 * fm["vision_layers"] * fm["vision_hidden"] * n * n
    projector = 2 * p["projector"] * n
    decoder = 2 * p["lm_layers"] * prompt_len + 4 * fm["text_layers"] * fm["text_hidden"] * prompt_len * (
        prompt_len + 1) / 2
    return vision + projector + decoder + 2 * p["lm_head"]


def decode_flops(fm: dict, context: int) -> float:
    """FLOPs of one generated token at a context of `context` tokens: decoder + lm_head + attention over the cache."""
    p = fm["params"]
    return 2 * (p["lm_layers"] + p["lm_head"]) + 4 * fm["text_layers"] * fm["text_hidden"] * context


def decode_bytes(fm: dict, contexts: list[int], element: int) -> float:
    """Bytes one decode step of a batch reads at least: decoder and lm_head weights once, each row's KV cache."""
    p = fm["params"]
    weights = (p["lm_layers"] + p["lm_head"]) * element
    return weights + sum(2 * fm["text_layers"] * fm["kv_dim"] * c * element for c in contexts)


def roofline(measured: dict[str, Measured], fm: dict, items: int, new_tokens: int, element: int,
             peak: dict) -> dict:
    """Prefill and decode tokens/s and TFLOP/s (and decode GB/s) of the bare model at batch 1 and 8, vs peak.

    Prefill is timed by the `_prefill` configurations (one new token); decode is the rest of the full run's time,
    spread over its new_tokens - 1 further steps. `element`: bytes per weight; `peak`: `peaks.peak_for`'s dict."""
    out = {}
    for bs in (1, 8):
        full, pre = measured.get(f"vlreft_bs{bs}"), measured.get(f"vlreft_bs{bs}_prefill")
        row: dict[str, Any] = {"batch_size": bs}
        if not full or not pre or full.status != "ok" or pre.status != "ok":
            row["reason"] = f"vlreft_bs{bs} or vlreft_bs{bs}_prefill did not run"
            out[f"bs{bs}"] = row
            continue
        prompts = pre.first.prompt_tokens
        pre_s = statistics.median(pre.generate_runs_s)
        gen_s = statistics.median(full.generate_runs_s)
        flops = sum(prefill_flops(fm, n) for n in prompts)
        row.update(prompt_tokens_mean=statistics.mean(prompts), image_tokens_per_prompt=fm["n_patches"],
                   prefill_s=pre_s, prefill_tokens_per_s=sum(prompts) / pre_s,
                   prefill_gflop_per_prompt=flops / len(prompts) / 1e9, prefill_tflops=flops / pre_s / 1e12,
                   generate_s=gen_s, generated_tokens_per_s=items * new_tokens / gen_s)
        decode_s = gen_s - pre_s
        steps = new_tokens - 1
        if decode_s <= 0 or steps < 1:
            row["decode_reason"] = f"decode time {decode_s:.4f} s over {steps} steps: not measurable"
        else:
            d_flops = sum(decode_flops(fm, n + k) for n in prompts for k in range(1, steps + 1))
            batches = [prompts[i:i + bs] for i in range(0, len(prompts), bs)]
            d_bytes = sum(decode_bytes(fm, [n + k for n in b], element) for b in batches for k in range(1, steps + 1))
            row.update(decode_s=decode_s, decode_tokens_per_s=items * steps / decode_s,
                       decode_gflop_per_token=d_flops / (items * steps) / 1e9, decode_tflops=d_flops / decode_s / 1e12,
                       decode_gbps=d_bytes / decode_s / 1e9)
        for key, num, den in (("prefill_fraction_of_peak_tflops", "prefill_tflops", "tflops"),
                              ("decode_fraction_of_peak_tflops", "decode_tflops", "tflops"),
                              ("decode_fraction_of_peak_gbps", "decode_gbps", "gbps")):
            row[key] = row[num] / peak[den] if row.get(num) is not None and peak[den] else None
        out[f"bs{bs}"] = row
    return out
