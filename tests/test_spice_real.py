"""SPICE itself, where Java and the jars are installed (`vlm-peft-bench spice setup`; CI fetches them, elsewhere
these tests skip with the reason): scores that follow from SPICE's definition, per caption and for the corpus, and
the official entry point (with Nashorn) and our launcher giving the same numbers on the same input.

SPICE parses each caption into a scene graph of tuples (objects, object-attribute pairs, subject-relation-object
triples) and reports, per image, the F-score of the candidate's tuples against the union of the references' tuples
(matched exactly or as WordNet synonyms); the corpus score is the mean over images (pycocoevalcap's np.mean).
"""

import math

import pytest

import vlm_peft_bench.scoring.captions as captions
import vlm_peft_bench.scoring.spice as spice

pytestmark = pytest.mark.slow  # a JVM loading CoreNLP's models per run: ~10-20 s each

# (candidate, references, (tp, fp, fn) of "All"), worked by hand:
CASES = [
    # the same caption: every tuple matched (dog, grass, dog-black, dog-run-on-grass)
    ("a black dog runs on the grass", ["a black dog runs on the grass"], (4, 0, 0)),
    # nothing shared: car, car-red against cat, cat-two, cat-sleeping
    ("a red car", ["two cats sleeping"], (0, 2, 3)),
    # cat, sofa, cat-white, sofa-red, cat-on-sofa against cat, cat-white: P 2/5, R 2/2, F 4/7
    ("a white cat on a red sofa", ["a white cat"], (2, 3, 0)),
    # dog against dog, dog-black: P 1, R 1/2, F 2/3
    ("a dog", ["a black dog"], (1, 0, 1)),
]
EXPECTED_F = [1.0, 0.0, 4 / 7, 2 / 3]


@pytest.fixture(scope="module")
def available():
    reason = spice.spice_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def run(tmp_path_factory) -> spice.SpiceOutput:
    with spice.SpiceJob([c[0] for c in CASES], [c[1] for c in CASES], tmp_path_factory.mktemp("cache")) as job:
        return job.result()


def f_score(tp: int, fp: int, fn: int) -> float:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


@pytest.fixture(scope="module")
def official(available, tmp_path_factory):
    return run(tmp_path_factory)


def test_scores_follow_the_definition(official):
    for image, (candidate, _, counts) in enumerate(CASES):
        stats = official.subsets[image]["All"]
        assert (stats["tp"], stats["fp"], stats["fn"]) == counts, candidate
        assert official.per_image[image] == pytest.approx(EXPECTED_F[image], abs=1e-12), candidate
        assert stats["f"] == pytest.approx(f_score(*counts), abs=1e-12)
    assert official.score == pytest.approx(sum(EXPECTED_F) / len(EXPECTED_F), abs=1e-12)
    assert official.subsets[0]["Object"]["tp"] == 2 and official.subsets[2]["Relation"]["fp"] == 1


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_the_official_entry_point_and_our_launcher_agree(official, tmp_path_factory, monkeypatch):
    corenlp = spice.find_corenlp()
    if not spice.nashorn_jars(corenlp):
        pytest.skip("Nashorn is not in the CoreNLP folder (`vlm-peft-bench spice setup` adds it): nothing to compare")
    java = spice.shutil.which("java")
    major, has_compiler = spice.java_info(java)
    if major < spice.FIRST_JAVA_WITHOUT_JAVASCRIPT or not has_compiler:
        pytest.skip(f"Java {major} {'has a JavaScript engine' if has_compiler else 'is a JRE'}: no launcher here")
    monkeypatch.setattr(spice, "nashorn_jars", lambda folder: [])
    assert spice.entry_point(major, corenlp).startswith("our launcher")
    launched = run(tmp_path_factory)
    assert launched.per_image == official.per_image
    for image, subsets in official.subsets.items():
        for name, stats in subsets.items():
            for key, value in stats.items():
                assert same(value, launched.subsets[image][name][key]), (image, name, key)


def test_a_better_caption_scores_higher_and_caption_scores_includes_spice(available, tmp_path):
    references = {1: ["a man is riding a horse on the beach", "a person rides a brown horse"], 2: ["a cat on a sofa"]}
    good = spice.spice_score({1: "a man riding a horse", 2: "a cat sitting on a sofa"}, references, tmp_path)
    bad = spice.spice_score({1: "a cat sitting on a sofa", 2: "a man riding a horse"}, references, tmp_path)
    assert 0.0 <= bad < good <= 1.0
    scores = captions.caption_scores({1: "a man riding a horse", 2: "a cat sitting on a sofa"}, references,
                                     ["SPICE"])
    assert 0.0 < scores["SPICE"] <= 1.0


def test_the_cost_benchmark_times_spice_cold_and_warm(available):
    from benchmarks.caption_scoring import mini_captions, spice_cost

    predictions, references = mini_captions()
    assert len(predictions) == 200 and all(len(r) == 4 for r in references.values())
    few = {i: predictions[i] for i in list(predictions)[:3]}
    result = spice_cost({"three": (few, {i: references[i] for i in few})})["three"]
    assert result["captions"] == 3 and 0.0 < result["spice"] <= 1.0
    for run in ("cold", "warm", "all_but_spice"):
        assert result[run]["wall_s"] > 0
