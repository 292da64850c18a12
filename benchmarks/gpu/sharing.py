"""Shared image prefixes and shared contexts at full size: a VQAv2-style workload (several questions per image,
default 5) generated with sharing on and off through the `Runner` vlreft uses, and 4-option log-likelihood
requests (one context, four one-token continuations) scored both ways. Reported: questions/s, the shared / unshared
ratios, whether the answers (token ids) and log-likelihoods agree, and the shared pass's useful FLOP/s as a
fraction of the card's dense peak (`shared_flops`: the work sharing leaves, counted from the model's parameters).
"""

from __future__ import annotations

import statistics
import time

from benchmarks.gpu.flops import decode_flops
from benchmarks.gpu.model import PROMPTS, make_requests

LETTERS = ("A", "B", "C", "D")


def shared_flops(fm: dict, prefix: int, questions: list[int], new_tokens: int) -> float:
    """Useful FLOPs of one image's shared pass: vision tower and projector once, the decoder over the `prefix` tokens
    once, then each question's tokens (attending to the prefix), its lm_head row and `new_tokens` - 1 decode steps.
    Same conventions as `flops.prefill_flops` (2 FLOPs per multiply-add, causal attention, no padding)."""
    p, n, layers, hidden = fm["params"], fm["n_patches"], fm["text_layers"], fm["text_hidden"]
    vision = 2 * p["vision"] * n + 4 * fm["vision_layers"] * fm["vision_hidden"] * n * n + 2 * p["projector"] * n
    total = vision + 2 * p["lm_layers"] * prefix + 4 * layers * hidden * prefix * (prefix + 1) / 2
    for q in questions:
        total += 2 * p["lm_layers"] * q + 4 * layers * hidden * q * (prefix + (q + 1) / 2) + 2 * p["lm_head"]
        total += sum(decode_flops(fm, prefix + q + k) for k in range(1, new_tokens))
    return total


def _generate(runner, requests, batch_size: int, new_tokens: int, share: bool, sync) -> tuple[float, list]:
    import torch

    found: dict[int, list[int]] = {}
    kwargs = {"max_new_tokens": new_tokens, "temperature": 0}
    sync()
    start = time.perf_counter()
    with torch.inference_mode():
        encoded = runner.encode([r.context for r in requests], [r.image for r in requests])
        for batch in _batches(runner, requests, encoded, batch_size, kwargs, share):
            found.update(batch)
    sync()
    return time.perf_counter() - start, [found[i] for i in range(len(requests))]


def _batches(runner, requests, encoded, batch_size, gen, share):
    from vlm_peft_bench import shared_prefix

    kwargs = runner.generate_kwargs(dict(gen), [])
    for batch in shared_prefix.generate(runner, requests, encoded, batch_size, kwargs, share):
        yield [(index, ids.tolist()) for index, ids in batch]


def _loglikelihoods(runner, requests, batch_size: int, share: bool, sync) -> tuple[float, list]:
    import torch

    found = {}
    sync()
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in runner.loglikelihoods(requests, batch_size, share):
            found.update(batch)
    sync()
    return time.perf_counter() - start, [found[i] for i in range(len(requests))]


def measure_sharing(setup, fm: dict, images: int, per_image: int, batch_size: int, repeats: int,
                    peak_tflops: float | None) -> dict:
    """Shared / unshared generation and log-likelihood on the bare model, interleaved repeats, medians."""
    from vlm_peft_bench.runner import Runner
    from vlm_peft_bench.shared_context import ContinuationRequest
    from vlm_peft_bench.shared_prefix import PromptRequest

    runner = Runner(setup.base, setup.processor, setup.device)
    pictures = [r.image for r in make_requests(images, setup.config.vision_config.image_size, setup.seed + 1)]
    generation = [PromptRequest(PROMPTS[(i + j) % len(PROMPTS)], picture) for i, picture in enumerate(pictures)
                  for j in range(per_image)]
    scoring = [ContinuationRequest(PROMPTS[i % len(PROMPTS)], letter, picture) for i, picture in enumerate(pictures)
               for letter in LETTERS]
    runs: dict[str, list[float]] = {"shared": [], "unshared": [], "mc_shared": [], "mc_unshared": []}
    outputs: dict[str, list] = {}
    steps = {"shared": lambda: _generate(runner, generation, batch_size, setup.new_tokens, True, setup.sync),
             "unshared": lambda: _generate(runner, generation, batch_size, setup.new_tokens, False, setup.sync),
             "mc_shared": lambda: _loglikelihoods(runner, scoring, batch_size, True, setup.sync),
             "mc_unshared": lambda: _loglikelihoods(runner, scoring, batch_size, False, setup.sync)}
    for step in steps.values():  # warm-up
        step()
    for rep in range(repeats):
        names = list(steps)
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            seconds, out = steps[name]()
            runs[name].append(seconds)
            outputs.setdefault(name, out)
    median = {name: statistics.median(values) for name, values in runs.items()}
    encoded = runner.encode([r.context for r in generation], [r.image for r in generation])
    image_id = setup.processor.image_token_id
    prefix = len(encoded[0]) - encoded[0][::-1].index(image_id)
    flops = sum(shared_flops(fm, prefix, [len(ids) - prefix for ids in encoded[i * per_image:(i + 1) * per_image]],
                             setup.new_tokens) for i in range(images))
    tflops = flops / median["shared"] / 1e12
    mc = outputs["mc_shared"], outputs["mc_unshared"]
    return {
        "images": images, "questions_per_image": per_image, "batch_size": batch_size, "repeats": repeats,
        "new_tokens": setup.new_tokens, "seconds": median, "runs_s": runs,
        "questions_per_s": {"shared": len(generation) / median["shared"],
                            "unshared": len(generation) / median["unshared"]},
        "ratio": median["unshared"] / median["shared"],
        "answers_identical": outputs["shared"] == outputs["unshared"],
        "shared_tflops": tflops, "shared_fraction_of_peak_tflops": tflops / peak_tflops if peak_tflops else None,
        "mc4": {"requests": len(scoring), "ratio": median["mc_unshared"] / median["mc_shared"],
                "largest_loglikelihood_difference": max(abs(a[0] - b[0]) for a, b in zip(*mc)),
                "greedy_flags_identical": [a[1] for a in mc[0]] == [b[1] for b in mc[1]]},
    }


def sharing_lines(s: dict) -> list[str]:
    if "error" in s:
        return ["", f"sharing: failed ({s['error'][-300:]})"]
    pct = "-" if s["shared_fraction_of_peak_tflops"] is None else f"{100 * s['shared_fraction_of_peak_tflops']:.2f}"
    return ["", f"sharing, {s['images']} images x {s['questions_per_image']} questions, batch {s['batch_size']}, "
                f"{s['new_tokens']} new tokens: {s['questions_per_s']['shared']:.2f} questions/s shared, "
                f"{s['questions_per_s']['unshared']:.2f} unshared (ratio {s['ratio']:.3f}; answers identical: "
                f"{'yes' if s['answers_identical'] else 'NO'}); shared pass {s['shared_tflops']:.3f} TFLOP/s = "
                f"{pct}% of peak",
            f"4-option log-likelihood, {s['mc4']['requests']} requests: shared / unshared {s['mc4']['ratio']:.3f} "
            f"(max difference {s['mc4']['largest_loglikelihood_difference']:.1e}, greedy flags identical: "
            f"{'yes' if s['mc4']['greedy_flags_identical'] else 'NO'})"]
