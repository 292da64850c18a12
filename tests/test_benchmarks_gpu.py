"""Smoke tests of `benchmarks/gpu.sh` on the CPU at toy size: the whole script path runs, its JSON carries every
measurement, and a machine without lmms-eval, pyreft or peft (the bare GPU image) skips the configurations needing
them (ReFT needs neither pyreft nor pyvene) with the reason instead of failing. Plus, on their own: the FLOP counts,
the throughput-against-peak arithmetic on a worked example, and the peak table's lookups, units and fallbacks.

No timing thresholds: timings belong in the benchmark's report, never in pass/fail tests.
"""

import json
import math
import os
import subprocess
import sys

import pytest

from benchmarks.common import RATIOS
from benchmarks.gpu.cli import chosen_configs
from benchmarks.gpu.flops import decode_flops, flop_model, prefill_flops, roofline
from benchmarks.gpu.measure import Measured
from benchmarks.gpu.peaks import PEAKS, lookup_peak, peak_for
from benchmarks.gpu.runners import CONFIGS, Config, PassResult

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

    sharing = data["sharing"]  # 8 images x 5 questions, shared and unshared: the same tokens, FLOP/s against peak
    assert sharing["questions_per_image"] == 5 and sharing["answers_identical"] is True
    assert sharing["questions_per_s"]["shared"] > 0 and sharing["ratio"] > 0
    assert sharing["shared_fraction_of_peak_tflops"] == pytest.approx(sharing["shared_tflops"] / 2)
    assert sharing["mc4"]["greedy_flags_identical"] and sharing["mc4"]["largest_loglikelihood_difference"] < 1e-4

    for what in ("throughput vlreft / llava_hf", "time ReFT / bare", "time merged LoRA / bare",
                 "throughput batch 8 / batch 1", "prefill tok/s", "greedy vlreft_vs_llava_hf", "questions/s shared",
                 "4-option log-likelihood"):
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


def measured(name: str, batch_size: int, prompts: list[int], generate_s: float) -> Measured:
    m = Measured(Config(name, "vlreft", batch_size), generate_runs_s=[generate_s], runs_s=[generate_s])
    m.first = PassResult(["x"] * len(prompts), None, generate_s, prompts)
    return m


# A model small enough to count by hand: 2 decoder layers of width 3 (kv width 1), a 1-layer vision tower of width 2
# on 4 patches; parameters: vision 10, projector 2, decoder layers 100, lm_head 50.
TINY_FM = {"params": {"vision": 10, "vision_position_table": 0, "projector": 2, "lm_embedding": 0, "lm_head": 50,
                      "lm_layers": 100},
           "n_patches": 4, "vision_layers": 1, "vision_hidden": 2, "text_layers": 2, "text_hidden": 3, "kv_dim": 1}


def test_roofline_worked_example():
    """Two prompts of 6 tokens, 3 new tokens each, 2-byte weights.

    Prefill FLOPs of one prompt: vision 2*10*4 + 4*1*2*4*4 = 208, projector 2*2*4 = 16, decoder 2*100*6 + 4*2*3*6*7/2
    = 1704, lm_head 2*50 = 100: 2028; both prompts 4056. Decode: 2 steps after the first token, at contexts 7 and 8;
    one token costs 2*(100+50) + 4*2*3*context: 468 + 492 = 960 per prompt, 1920 in all. Bytes per step: the
    weights (100+50)*2 = 300 once per batch, plus 2*2*1*context*2 = 8*context of KV cache per row: at batch 1,
    (356 + 364) * 2 batches = 1440; at batch 8 (one batch of both rows), 412 + 428 = 840.
    Batch 1 timings: prefill 2 s, full generation 5 s, so decode 3 s; batch 8: 1 s and 2.5 s, decode 1.5 s."""
    runs = {"vlreft_bs1_prefill": measured("vlreft_bs1_prefill", 1, [6, 6], 2.0),
            "vlreft_bs1": measured("vlreft_bs1", 1, [6, 6], 5.0),
            "vlreft_bs8_prefill": measured("vlreft_bs8_prefill", 8, [6, 6], 1.0),
            "vlreft_bs8": measured("vlreft_bs8", 8, [6, 6], 2.5)}
    peak = {"tflops": 4.056e-9, "gbps": 1.2e-6}  # TFLOP/s and GB/s, as the table's
    out = roofline(runs, TINY_FM, items=2, new_tokens=3, element=2, peak=peak)
    bs1, bs8 = out["bs1"], out["bs8"]
    assert prefill_flops(TINY_FM, 6) == 2028
    assert bs1["prompt_tokens_mean"] == 6 and bs1["image_tokens_per_prompt"] == 4
    assert bs1["prefill_tokens_per_s"] == pytest.approx(12 / 2)
    assert bs1["prefill_gflop_per_prompt"] == pytest.approx(2028e-9)
    assert bs1["prefill_tflops"] == pytest.approx(4056 / 2 / 1e12)
    assert bs1["prefill_fraction_of_peak_tflops"] == pytest.approx(0.5)  # 2.028e-9 of 4.056e-9
    assert bs1["generated_tokens_per_s"] == pytest.approx(2 * 3 / 5)
    assert bs1["decode_s"] == pytest.approx(3.0) and bs1["decode_tokens_per_s"] == pytest.approx(4 / 3)
    assert bs1["decode_gflop_per_token"] == pytest.approx(1920 / 4 / 1e9)
    assert bs1["decode_tflops"] == pytest.approx(1920 / 3 / 1e12)
    assert bs1["decode_fraction_of_peak_tflops"] == pytest.approx(1920 / 3 / 1e12 / 4.056e-9)
    assert bs1["decode_gbps"] == pytest.approx(1440 / 3 / 1e9)
    assert bs1["decode_fraction_of_peak_gbps"] == pytest.approx(0.4)  # 4.8e-7 of 1.2e-6
    assert bs8["prefill_fraction_of_peak_tflops"] == pytest.approx(1.0)
    assert bs8["decode_tflops"] == pytest.approx(1920 / 1.5 / 1e12)
    assert bs8["decode_gbps"] == pytest.approx(840 / 1.5 / 1e9)  # weights read once for both rows


def test_roofline_reasons_instead_of_numbers():
    """Decode time not above prefill: no decode figures; a missing configuration or peak: reasons, no fractions."""
    runs = {"vlreft_bs1_prefill": measured("vlreft_bs1_prefill", 1, [6, 6], 2.0),
            "vlreft_bs1": measured("vlreft_bs1", 1, [6, 6], 1.9)}
    out = roofline(runs, TINY_FM, items=2, new_tokens=3, element=2, peak={"tflops": None, "gbps": None})
    assert "not measurable" in out["bs1"]["decode_reason"] and "decode_tflops" not in out["bs1"]
    assert out["bs1"]["prefill_tflops"] > 0 and out["bs1"]["prefill_fraction_of_peak_tflops"] is None
    assert out["bs1"]["decode_fraction_of_peak_gbps"] is None
    assert out["bs8"] == {"batch_size": 8, "reason": "vlreft_bs8 or vlreft_bs8_prefill did not run"}


def unescaped(pattern: str) -> str:
    return pattern.replace(r"\b", "")


def test_every_peak_row_is_reachable():
    """First match wins: a card named as a row's pattern must get that row, not an earlier, more general one (an
    "H100" row above "H100 PCIe" would give every PCIe card the SXM figures)."""
    for row in PEAKS:
        assert lookup_peak(f"NVIDIA {unescaped(row[0])}") is row, row[0]


def test_peak_table_units():
    """TFLOP/s and GB/s: a card's ridge point (FLOPs per byte read at which it turns compute-bound) lies between 50
    and 1000 for every datacenter and workstation GPU; TB/s for GB/s, or GFLOP/s for TFLOP/s, would put it 1000x
    off."""
    for pattern, tflops, gbps in PEAKS:
        assert tflops > 0, pattern
        if gbps is not None:
            assert 50 <= tflops * 1e12 / (gbps * 1e9) <= 1000, pattern


@pytest.mark.parametrize("name, row", [
    ("NVIDIA H200", "H200"), ("NVIDIA H200 NVL", "H200 NVL"), ("NVIDIA H100 80GB HBM3", "H100"),
    ("NVIDIA H100 PCIe", "H100 PCIe"), ("NVIDIA GH200 480GB", "GH200"), ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
    ("NVIDIA A100-PCIE-40GB", "A100"), ("NVIDIA A100 80GB PCIe", "A100 80GB PCIe"), ("NVIDIA A10", r"\bA10\b"),
    ("NVIDIA L4", r"\bL4\b"), ("NVIDIA L40S", "L40S"),
])
def test_device_names_find_their_row(name, row):
    """Names as torch.cuda.get_device_name gives them select the right variant's row."""
    assert lookup_peak(name)[0] == row


def test_unknown_card_has_no_peak():
    assert lookup_peak("NVIDIA GeForce GTX 1080") is None
    assert lookup_peak("NVIDIA A10G") is None  # not the A10's datasheet: better no fraction than a wrong one


def test_peak_sources():
    """Overrides beat the table; the table fills what is left; an unknown card or a CPU gets None and the flag."""
    row = lookup_peak("NVIDIA H200")
    table = peak_for("NVIDIA H200", cuda=True)
    assert (table["tflops"], table["gbps"]) == (row[1], row[2])
    assert table["tflops_source"] == table["gbps_source"] == f"table ({row[0]})"
    mixed = peak_for("NVIDIA H200", cuda=True, tflops=100.0)
    assert (mixed["tflops"], mixed["tflops_source"]) == (100.0, "--peak-tflops") and mixed["gbps"] == row[2]
    gh200 = peak_for("NVIDIA GH200 480GB", cuda=True)  # the row has no bandwidth: HBM3 or HBM3e
    assert gh200["tflops"] == lookup_peak("NVIDIA GH200 480GB")[1] and gh200["gbps"] is None
    assert "--peak-gbps" in gh200["gbps_source"]
    unknown = peak_for("NVIDIA GeForce GTX 1080", cuda=True)
    assert unknown["tflops"] is None and unknown["gbps"] is None
    assert "'NVIDIA GeForce GTX 1080' not in the peak table" in unknown["tflops_source"]
    assert unknown["tflops_source"].endswith("pass --peak-tflops")
    assert unknown["gbps_source"].endswith("pass --peak-gbps")
    cpu = peak_for("NVIDIA H200", cuda=False)  # a CPU is never looked up, whatever its name
    assert cpu["tflops"] is None and "not a CUDA device" in cpu["tflops_source"]


def test_unknown_configuration_is_refused():
    assert chosen_configs(None) == [c.name for c in CONFIGS]
    assert chosen_configs("vlreft_bs8, vlreft_bs1") == ["vlreft_bs1", "vlreft_bs8"]
    with pytest.raises(SystemExit, match="nope"):
        chosen_configs("vlreft_bs1,nope")
