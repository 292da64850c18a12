"""Smoke tests of `benchmarks/gpu.sh` on the CPU at toy size: the whole script path runs, its JSON carries every
measurement, and a machine without lmms-eval, pyreft or peft (the bare GPU image) skips the configurations needing
them (ReFT needs neither pyreft nor pyvene) with the reason instead of failing. Plus the FLOP counts and the peak
table, checked on their own.

No timing thresholds: timings belong in the benchmark's report, never in pass/fail tests.
"""

import json
import math
import os
import subprocess
import sys

import pytest

from benchmarks.gpu import (
    CONFIGS,
    decode_flops,
    flop_model,
    lookup_peak,
    prefill_flops,
)
from benchmarks.run import RATIOS

from .conftest import REPO

NAMES = {c.name for c in CONFIGS}
DIRECT = {c.name for c in CONFIGS if c.kind != "llava_hf"}
NEEDS_LIBRARY = {"llava_hf_bs1": "lmms_eval", "lora_unmerged_bs1": "peft", "lora_merged_bs1": "peft"}  # ReFT: none


def run_gpu_sh(tmp_path, *args, pythonpath=None):
    out = tmp_path / "gpu.json"
    env = dict(os.environ, PYTHON=sys.executable, OMP_WAIT_POLICY="PASSIVE",
               VLM_BENCH_WHEELS=str(tmp_path / "no-wheels"))  # a developer's .whl/ must not change the test
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--device", "cpu", "--size", "toy",
                           "--quick", "--out", str(out), *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_toy_cpu_run_writes_every_measurement(tmp_path):
    data, stdout = run_gpu_sh(tmp_path, "--peak-tflops", "2", "--peak-gbps", "50")
    settings = data["settings"]
    items, new_tokens = settings["items"], settings["new_tokens"]
    assert settings["repeats_done"] == settings["repeats"] == 1
    assert set(data["configs"]) == NAMES
    for name, c in data["configs"].items():
        assert c["status"] == "ok", (name, c["reason"])
        assert is_number(c["samples_per_s"]) and c["samples_per_s"] > 0
        assert len(c["runs_s"]) == 1
        per_item = 1 if name.endswith("_prefill") else new_tokens
        assert c["new_tokens"] == items * per_item
        if name in DIRECT:  # the zeroed lm_head rows keep every row generating to the end
            assert c["every_row_full_length"] is True and c["only_ordinary_tokens"] is True, name
            assert all(text.strip() for text in c["examples"]), name
        assert c["peak_mib"] is None and c["weights_mib"] > 0  # CUDA memory statistics only on a GPU
    assert data["memory_note"]

    assert set(data["ratios"]) == set(RATIOS)
    for key, r in data["ratios"].items():
        assert is_number(r["ratio"]) and r["ratio"] > 0, key
        assert is_number(r["ratio_best_pass"]) and r["ratio_best_pass"] > 0, key
        assert r["met"] is None if RATIOS[key][3] is None else isinstance(r["met"], bool)

    # same weights, same prompt and pixels through our path and lmms-eval's llava_hf: the same greedy answers
    assert data["greedy_identical"]["vlreft_vs_llava_hf"]["mismatches"] == 0
    for g in data["greedy_identical"].values():
        assert isinstance(g["mismatches"], int)

    assert data["peak"]["tflops"] == 2 and data["peak"]["tflops_source"] == "--peak-tflops"
    for key in ("bs1", "bs8"):
        r = data["throughput_vs_peak"][key]
        for field in ("prefill_tokens_per_s", "prefill_tflops", "prefill_gflop_per_prompt", "generated_tokens_per_s"):
            assert is_number(r[field]) and r[field] > 0, (key, field)
        assert r["prefill_fraction_of_peak_tflops"] == pytest.approx(r["prefill_tflops"] / 2)
        if "decode_reason" not in r:  # decode = generate(all tokens) - generate(one token): noise can swallow it
            assert r["decode_fraction_of_peak_gbps"] == pytest.approx(r["decode_gbps"] / 50)
    assert data["model"]["params_total"] > 0 and data["model"]["image_tokens"] == 64

    for what in ("throughput vlreft / llava_hf", "time ReFT / bare", "time merged LoRA / bare",
                 "throughput batch 8 / batch 1", "prefill tok/s", "greedy vlreft_vs_llava_hf"):
        assert what in stdout


def test_bare_image_skips_configurations_whose_library_is_missing(tmp_path):
    """As on the borrowed GPU image: lmms-eval, pyreft, pyvene and peft do not import. The run still completes, ReFT
    included (our interventions need neither pyreft nor pyvene)."""
    stubs = tmp_path / "stubs"
    for name in ("lmms_eval", "pyreft", "pyvene", "peft"):
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed (test stub)')\n")
    data, stdout = run_gpu_sh(tmp_path, "--new-tokens", "4", pythonpath=str(stubs))
    for name, library in NEEDS_LIBRARY.items():
        c = data["configs"][name]
        assert c["status"] == "skipped" and library in c["reason"] and "not importable" in c["reason"], c
    for name in NAMES - set(NEEDS_LIBRARY):
        assert data["configs"][name]["status"] == "ok", data["configs"][name]["reason"]
    ratios = data["ratios"]
    assert ratios["batch8_vs_batch1"]["ratio"] > 0 and ratios["reft_overhead"]["ratio"] > 0
    for key in ("vlreft_vs_llava_hf", "lora_merged_vs_bare", "lora_unmerged_vs_bare",
                "lora_merged_vs_unmerged"):
        assert ratios[key]["ratio"] is None and ratios[key]["met"] is None and "skipped" in ratios[key]["reason"]
    assert data["greedy_identical"]["vlreft_vs_llava_hf"]["mismatches"] is None
    # no peak known for a CPU and none given: no fraction, and the reason says how to give one
    assert data["peak"]["tflops"] is None and "--peak-tflops" in data["peak"]["tflops_source"]
    assert data["throughput_vs_peak"]["bs1"]["prefill_fraction_of_peak_tflops"] is None
    assert "skipped: peft not importable" in stdout and "pyreft" not in stdout


def test_full_size_parameter_and_flop_counts():
    """The full architecture on the meta device (no memory): parts counted from the model's own tensors agree with
    a count written out from nanoLLaVA's published dimensions."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from vlm_peft_bench.nanollava.config import NANOLLAVA_TEXT, NANOLLAVA_VISION, llava_config

    config = llava_config(NANOLLAVA_TEXT, NANOLLAVA_VISION, 3)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    fm = flop_model(model, config)
    d, ff, layers, vocab = 1024, 2816, 24, 151936
    per_layer = 3 * (d * d + d) + d * d + 3 * d * ff + 2 * d  # q/k/v with biases, o, gate/up/down, two RMSNorms
    assert fm["params"]["lm_layers"] == layers * per_layer + d  # + final norm
    assert fm["params"]["lm_head"] == fm["params"]["lm_embedding"] == vocab * d
    v, vff, patches = 1152, 4304, 729
    v_layer = 4 * (v * v + v) + (v * vff + vff) + (vff * v + v) + 2 * 2 * v  # q/k/v/out, fc1, fc2, two LayerNorms
    patch_embedding = 3 * 14 * 14 * v + v
    assert fm["params"]["vision"] == 26 * v_layer + patch_embedding + 2 * v  # + post_layernorm
    assert fm["params"]["vision_position_table"] == patches * v
    assert fm["params"]["projector"] == (v * d + d) + (d * d + d)
    assert fm["n_patches"] == patches
    assert 1.0e9 < fm["params_total"] < 1.1e9  # "about 1.05 B"
    matmul = fm["params"]["lm_layers"] + fm["params"]["lm_head"]
    assert decode_flops(fm, 0) == 2 * matmul
    assert decode_flops(fm, 100) - decode_flops(fm, 0) == 4 * layers * d * 100
    # one more prompt token costs one decoder pass plus its causal attention row; the image part does not change
    assert prefill_flops(fm, 801) - prefill_flops(fm, 800) == 2 * fm["params"]["lm_layers"] + 4 * layers * d * 801


@pytest.mark.parametrize("name, tflops, gbps", [
    ("NVIDIA H200", 989, 4800), ("NVIDIA H200 NVL", 835, 4800), ("NVIDIA H100 80GB HBM3", 989, 3350),
    ("NVIDIA H100 PCIe", 756, 2000), ("NVIDIA GH200 480GB", 989, None), ("NVIDIA A100-SXM4-80GB", 312, 2039),
    ("NVIDIA A100-PCIE-40GB", 312, 1555), ("NVIDIA A10", 125, 600), ("NVIDIA L4", 121, 300),
    ("NVIDIA L40S", 362, 864),
])
def test_peak_table_lookup(name, tflops, gbps):
    _, found_tflops, found_gbps = lookup_peak(name)
    assert (found_tflops, found_gbps) == (tflops, gbps)


def test_unknown_card_has_no_peak():
    assert lookup_peak("NVIDIA GeForce GTX 1080") is None
    assert lookup_peak("NVIDIA A10G") is None  # not the A10's datasheet: better no fraction than a wrong one
