"""Time caption_scores on 5,000 synthetic captions x 5 references: METEOR alone against all metrics but SPICE.

The target: all metrics but SPICE take at most ~1.2x METEOR alone (METEOR is the long pole; tokenization, BLEU,
ROUGE-L and CIDEr-D must fit inside it). Both runs go through caption_scores with PTB tokenization, on the same
inputs, alternated in one process (--repeats N gives medians). With --reference, pycocoevalcap's own Meteor class
(one line, then its answer, as COCOEvalCap runs it) is timed as well on the same tokenized text, and its score
compared with ours. Wall times depend on what else the machine runs: each run's CPU seconds (ours, Java children
included) and the cores that other processes kept busy meanwhile are recorded beside them. The metrics can only fit
inside METEOR's time on a core that METEOR and other processes leave free.

With --spice (where SPICE can run: `vlm-peft-bench spice setup`), SPICE is timed too, through caption_scores with
PTB tokenization like the others: on the 200 `coco_captions_mini` images (each image's first reference as the
candidate, the other four as references) and on the 5,000 synthetic captions, each cold (an empty reference-parse
cache) and warm (the same cache again, as a second run or another process pointed at the same folder finds it).

    .venv/bin/python benchmarks/caption_scoring.py [--n 5000] [--refs 5] [--repeats 1] [--reference] [--spice]
                                                   [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vlm_peft_bench.scoring.captions import CAPTION_METRICS, caption_scores, ptb_tokenize  # noqa: E402

# Scenes: who, doing what (three verb forms) with which things, where. Sentences vary wording, order and casing.
SUBJECTS = [
    ("a man", "a guy", "a person"), ("a woman", "a lady", "a person"), ("two children", "two kids", "a couple of kids"),
    ("a young boy", "a boy", "a little boy"), ("an elderly woman", "an old woman", "a woman"),
    ("a group of people", "several people", "a crowd"), ("a teenage girl", "a girl", "a young woman"),
    ("a man in a suit", "a businessman", "a man"), ("a chef", "a cook", "a man in an apron"),
]  # fmt: skip
ACTIVITIES = [
    (("is riding", "rides", "riding"), [("a bicycle", "a bike"), ("a horse", "a brown horse"), ("a motorcycle",)]),
    (("is sitting on", "sits on", "sitting on"), [("a wooden bench", "a bench"), ("a couch", "a sofa")]),
    (("is holding", "holds", "holding"), [("an umbrella", "a black umbrella"), ("a cell phone", "a phone")]),
    (("is eating", "eats", "eating"), [("a slice of pizza", "pizza"), ("a sandwich", "half a sandwich")]),
    (("is flying", "flies", "flying"), [("a colorful kite", "a kite"), ("a red kite", "a kite")]),
    (("is throwing", "throws", "throwing"), [("a red frisbee", "a frisbee"), ("a baseball", "a ball")]),
    (("is using", "uses", "using"), [("a laptop computer", "a laptop"), ("a tablet", "a small computer")]),
    (("is walking", "walks", "walking"), [("a dog", "a small dog"), ("two dogs", "a pair of dogs")]),
    (("is carrying", "carries", "carrying"), [("a surfboard", "a white surfboard"), ("a teddy bear", "a toy")]),
]  # fmt: skip
PLACES = [
    ("in a park", "at the park"), ("on a busy street", "on a city street"), ("at the beach", "on the sand"),
    ("in a kitchen", "in a small kitchen"), ("near a river", "by the water"), ("in a living room", "inside a house"),
    ("on a snowy hill", "in the snow"), ("at a train station", "next to the tracks"), ("in a grassy field",
    "on the grass"), ("in front of a building", "outside a building"), ("at night", "in the dark"),
]  # fmt: skip
EXTRAS = ["", "", "", " on a sunny day", " while it rains", " with a smile", " in the afternoon", " together"]


def _sentence(rng: random.Random, subject: tuple, activity: tuple, place: tuple) -> str:
    verbs, things = activity
    subj, thing, where = rng.choice(subject), rng.choice(rng.choice(things)), rng.choice(place)
    form = rng.randrange(4)
    if form == 0:
        text = f"{subj} {verbs[0]} {thing} {where}{rng.choice(EXTRAS)}"
    elif form == 1:
        text = f"{subj} {verbs[1]} {thing} {where}"
    elif form == 2:
        text = f"{where}, {subj} {verbs[0]} {thing}"
    else:
        text = f"there is {subj} {verbs[2]} {thing} {where}{rng.choice(EXTRAS)}"
    if rng.random() < 0.6:
        text = text[0].upper() + text[1:]
    return text + rng.choice([".", ".", "", " .", "!"])


def synthetic_captions(n: int = 5000, refs_per_item: int = 5, seed: int = 0) -> tuple[dict, dict]:
    """Deterministic (predictions, references): each item is a scene described by varied templated sentences."""
    rng = random.Random(seed)
    predictions, references = {}, {}
    for i in range(n):
        scene = (rng.choice(SUBJECTS), rng.choice(ACTIVITIES), rng.choice(PLACES))
        references[i] = [_sentence(rng, *scene) for _ in range(refs_per_item)]
        roll = rng.random()
        if roll < 0.6:  # the same scene
            predictions[i] = _sentence(rng, *scene)
        elif roll < 0.9:  # right subject and place, wrong activity
            predictions[i] = _sentence(rng, scene[0], rng.choice(ACTIVITIES), scene[2])
        else:  # another scene
            predictions[i] = _sentence(rng, rng.choice(SUBJECTS), rng.choice(ACTIVITIES), rng.choice(PLACES))
    return predictions, references


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _machine_busy_seconds() -> float | None:
    """CPU seconds all processes on the machine have used (Linux /proc/stat), or None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _timed(fn, *args, **kwargs) -> tuple[dict, object]:
    """Run fn; its wall and CPU seconds (ours and our children's), and the cores other processes kept busy meanwhile."""
    busy, cpu, start = _machine_busy_seconds(), _cpu_seconds(), time.perf_counter()
    value = fn(*args, **kwargs)
    wall, ours = time.perf_counter() - start, _cpu_seconds() - cpu
    after = _machine_busy_seconds()
    others = None if busy is None or after is None else max(0.0, (after - busy - ours) / wall)
    return {"wall_s": wall, "cpu_s": ours, "other_processes_cores": others}, value


def _reference_meteor(predictions: dict, references: dict) -> tuple[float, float]:
    """(seconds, score) of pycocoevalcap's Meteor class on the PTB-tokenized text (tokenization not timed)."""
    from pycocoevalcap.meteor.meteor import Meteor

    ids = list(references)
    tokens = ptb_tokenize([r for i in ids for r in references[i]] + [predictions[i] for i in ids])
    gts, at = {}, 0
    for i in ids:
        gts[i] = tokens[at : at + len(references[i])]
        at += len(references[i])
    res = {i: [tokens[at + k]] for k, i in enumerate(ids)}
    start = time.perf_counter()
    meteor = Meteor()
    score, _ = meteor.compute_score(gts, res)
    seconds = time.perf_counter() - start
    meteor.__del__()  # pycocoevalcap ends its JVM only here
    return seconds, score


def mini_captions() -> tuple[dict, dict]:
    """coco_captions_mini's 200 images: the first reference as the candidate, the other four as references."""
    import pyarrow.parquet as pq

    rows = pq.read_table(REPO / "tasks" / "coco_captions" / "mini" / "test.parquet", columns=["id", "answer"])
    predictions, references = {}, {}
    for row in rows.to_pylist():
        predictions[row["id"]], references[row["id"]] = row["answer"][0], row["answer"][1:]
    return predictions, references


def spice_cost(sets: dict[str, tuple[dict, dict]]) -> dict:
    """SPICE's wall and CPU seconds per caption set, cold (an empty parse cache) then warm (the same cache), next to
    all the other metrics on the same set; the scores must not depend on the cache."""
    import tempfile

    from vlm_peft_bench.scoring.spice import spice_unavailable_reason

    reason = spice_unavailable_reason()
    if reason is not None:
        return {"error": reason}
    others = [m for m in CAPTION_METRICS if m != "SPICE"]
    out = {}
    for name, (predictions, references) in sets.items():
        with tempfile.TemporaryDirectory(prefix="spice-cache-") as cache:
            os.environ["VLM_PEFT_BENCH_SPICE_CACHE"] = cache
            cold, first = _timed(caption_scores, predictions, references, metrics=["SPICE"])
            warm, second = _timed(caption_scores, predictions, references, metrics=["SPICE"])
            del os.environ["VLM_PEFT_BENCH_SPICE_CACHE"]
        if first["SPICE"] != second["SPICE"]:
            raise SystemExit(f"{name}: SPICE differs with a warm cache: {first['SPICE']} vs {second['SPICE']}")
        rest, _ = _timed(caption_scores, predictions, references, metrics=others)
        out[name] = {"captions": len(predictions), "spice": first["SPICE"], "cold": cold, "warm": warm,
                     "all_but_spice": rest}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--refs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="alternate the two runs this many times; medians")
    parser.add_argument("--reference", action="store_true", help="also time pycocoevalcap's own Meteor class")
    parser.add_argument("--spice", action="store_true", help="also time SPICE, cold and warm (see the docstring)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "caption_scoring.json")
    args = parser.parse_args(argv)

    predictions, references = synthetic_captions(args.n, args.refs, args.seed)
    all_but_spice = [m for m in CAPTION_METRICS if m != "SPICE"]
    runs: dict[str, list[dict]] = {"meteor_alone": [], "all_but_spice": []}
    for _ in range(args.repeats):
        timing, meteor_only = _timed(caption_scores, predictions, references, metrics=["METEOR"])
        runs["meteor_alone"].append(timing)
        timing, scores = _timed(caption_scores, predictions, references, metrics=all_but_spice)
        runs["all_but_spice"].append(timing)
        if scores["METEOR"] != meteor_only["METEOR"]:
            raise SystemExit(f"METEOR differs between the runs: {meteor_only['METEOR']} vs {scores['METEOR']}")
    seconds = {name: statistics.median(r["wall_s"] for r in timings) for name, timings in runs.items()}
    result = {
        "captions": args.n,
        "references_per_caption": args.refs,
        "seed": args.seed,
        "repeats": args.repeats,
        "machine": {"python": platform.python_version(), "cpus": _cpus(), "platform": platform.platform()},
        "seconds": seconds,
        "ratio_all_to_meteor": seconds["all_but_spice"] / seconds["meteor_alone"],
        "target_ratio": 1.2,
        "runs": runs,
        "scores": scores,
        # ru_maxrss is in KiB on Linux; "children" is the largest Java process (PTB tokenizer or METEOR).
        "peak_rss_mib": {
            "python": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        },
    }
    if args.reference:
        ref_s, ref_score = _reference_meteor(predictions, references)
        result["pycocoevalcap_meteor"] = {"seconds": ref_s, "score": ref_score, "equal": ref_score == scores["METEOR"]}
    if args.spice:
        result["spice"] = spice_cost({"coco_captions_mini": mini_captions(),
                                      f"synthetic_{args.n}": (predictions, references)})
    _print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _print_table(result: dict) -> None:
    runs, seconds = result["runs"], result["seconds"]
    print(f"{result['captions']} captions x {result['references_per_caption']} references, {_cpus()} CPUs")
    print(f"  {'':32} {'wall s (median)':>15}   each run: wall s / our CPU s / cores busy with other processes")
    for name, label in (("meteor_alone", "METEOR alone (caption_scores)"), ("all_but_spice", "all but SPICE")):
        cells = [f"{r['wall_s']:.1f}/{r['cpu_s']:.1f}/{r['other_processes_cores'] or 0:.2f}" for r in runs[name]]
        detail = ", ".join(cells)
        print(f"  {label:<32} {seconds[name]:15.2f}   {detail}")
    if "pycocoevalcap_meteor" in result:
        ref = result["pycocoevalcap_meteor"]
        print(f"  {'pycocoevalcap Meteor class':<32} {ref['seconds']:15.2f}   same score: {ref['equal']}")
    print(f"  ratio all / METEOR alone: {result['ratio_all_to_meteor']:.3f} (target <= {result['target_ratio']})")
    spice = result.get("spice")
    if spice and "error" in spice:
        print(f"  SPICE not timed: {spice['error']}")
    elif spice:
        for name, r in spice.items():
            print(f"  SPICE on {name} ({r['captions']} captions, score {r['spice']:.4f}): cold "
                  f"{r['cold']['wall_s']:.1f} s, warm cache {r['warm']['wall_s']:.1f} s; all other metrics "
                  f"{r['all_but_spice']['wall_s']:.1f} s")
    peak = result["peak_rss_mib"]
    print(f"  peak RSS: python {peak['python']:.0f} MiB, largest child {peak['children']:.0f} MiB")
    print("  " + ", ".join(f"{k} {v:.4f}" for k, v in result["scores"].items()))


if __name__ == "__main__":
    main()
