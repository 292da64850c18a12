"""VQAv2-style items (`vqa_v2_mini`'s data): each image has three questions; each question has ten human answers
with realistic agreement and disagreement: digits and number words ("2", "two"), yes/no with an occasional
dissenter, colours with near-misses ("orange" / "yellow"), multi-word answers ("red circle", "the red circle"),
articles, casing, trailing periods and the odd typo. `multiple_choice_answer` is the most common of the ten answers,
and `answer_type` is "yes/no", "number" or "other", as in VQAv2. The truth comes from the scene
(`caption_vqa_scenes.py`).
"""

from __future__ import annotations

import collections
import random

from vlm_peft_bench_build.synthetic.caption_vqa_scenes import (
    BACKGROUNDS,
    FLOORS,
    NUMBER_WORDS,
    Obj,
    Scene,
    article,
    flat_scene,
    ground_scene,
    plural,
)
from vlm_peft_bench_build.synthetic.cvbench_scenes import COLOURS, SHAPES

VQA_SEED = 2015
N_VQA_IMAGES = 100
QUESTIONS_PER_IMAGE = 3

# Colours people confuse with each one, and shape words people use instead of ours.
NEAR_COLOURS = {
    "orange": ["yellow", "red", "dark orange"],
    "purple": ["violet", "blue", "dark purple"],
    "yellow": ["orange", "gold", "light yellow"],
    "cyan": ["blue", "teal", "turquoise", "light blue"],
    "black": ["dark gray", "gray", "dark"],
}
SHAPE_WORDS = {
    "circle": ["circle", "a circle", "round", "circles", "oval"],
    "square": ["square", "a square", "rectangle", "box"],
    "triangle": ["triangle", "a triangle", "triangular", "pyramid"],
    "diamond": ["diamond", "a diamond", "rhombus", "square"],
}


# How many of the ten people give the main answer, per answer type: (agreeing, weight).
AGREEMENT = {
    "yes/no": [(10, 40), (9, 25), (8, 15), (7, 10), (6, 10)],
    "number": [(10, 25), (9, 20), (8, 20), (7, 15), (6, 10), (5, 10)],
    "other": [(10, 15), (9, 15), (8, 20), (7, 20), (6, 15), (5, 10), (4, 5)],
}


def _weighted(rng: random.Random, pairs: list[tuple]) -> object:
    values, weights = zip(*pairs)
    return rng.choices(values, weights=weights)[0]


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word + word[-1]
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def human_answers(rng: random.Random, main: str, others: list[tuple[str, float]], answer_type: str) -> list[dict]:
    """Ten answers: `main` from most people, the rest drawn from `others` (answer, weight), in random order."""
    agree = _weighted(rng, AGREEMENT[answer_type])
    texts = [main] * agree + [_weighted(rng, others) for _ in range(10 - agree)]
    rng.shuffle(texts)
    answers = []
    for i, text in enumerate(texts):
        confidence = _weighted(rng, [("yes", 9), ("maybe", 1)] if text == main else
                               [("yes", 5), ("maybe", 4), ("no", 1)])
        answers.append({"answer": text, "answer_confidence": confidence, "answer_id": i + 1})
    return answers


def _number_others(rng: random.Random, n: int, noun: str) -> list[tuple[str, float]]:
    if n == 0:
        return [("none", 3), ("zero", 2), ("no", 1), ("1", 1), ("0 " + noun + "s", 0.5)]
    return [(NUMBER_WORDS[n], 4), (str(n + 1), 1.5), (str(n - 1), 1.0 if n > 1 else 0.3),
            (f"{n} {plural(noun, n)}", 1), (NUMBER_WORDS[n].capitalize(), 0.5)]


def _yes_no_others(rng: random.Random, answer: str) -> list[tuple[str, float]]:
    other = "no" if answer == "yes" else "yes"
    return [(other, 3), (answer.capitalize(), 2), (answer + ".", 1), ("yep" if answer == "yes" else "nope", 0.5)]


def _colour_others(rng: random.Random, colour: str) -> list[tuple[str, float]]:
    return ([(near, 2) for near in NEAR_COLOURS[colour]]
            + [(colour.capitalize(), 1.5), (colour + ".", 1), (_typo(rng, colour), 1), (f"{colour} color", 0.5)])


def _object_others(rng: random.Random, o: Obj, scene: Scene) -> list[tuple[str, float]]:
    wrong = [p.name for p in scene.objects if p.name != o.name]
    pairs = [(f"the {o.name}", 3), (o.shape, 2), (f"{article(o.name)} {o.name}", 1.5), (o.colour, 1),
             (f"{o.name}.", 0.5), (f"{o.colour} {_typo(rng, o.shape)}", 0.5), (f"the {o.colour} one", 1)]
    return pairs + [(w, 1.5 / len(wrong)) for w in wrong]


def _question(text: str, qtype: str, answer_type: str, main: str, others: list[tuple[str, float]]) -> dict:
    return dict(question=text, question_type=qtype, answer_type=answer_type, main=main, others=others)


def yes_no_questions(rng: random.Random, scene: Scene) -> list[dict]:
    objs, out = scene.objects, []
    present = rng.choice(objs)
    absent = [(c, s) for c in COLOURS for s in SHAPES if not scene.count(lambda o, c=c, s=s: o.name == f"{c} {s}")]
    c, s = present.colour, present.shape
    if rng.random() < 0.5:
        c, s = rng.choice(absent)
    truth = "yes" if scene.count(lambda o: o.name == f"{c} {s}") else "no"
    out.append(_question(f"Is there {article(c)} {c} {s} in the picture?", "is there a", "yes/no", truth,
                         _yes_no_others(rng, truth)))
    shape = rng.choice(SHAPES)
    truth = "yes" if scene.count(lambda o: o.shape == shape) else "no"
    out.append(_question(f"Are there any {shape}s?", "are there", "yes/no", truth, _yes_no_others(rng, truth)))
    if len(objs) >= 2:
        truth = "yes" if len({o.colour for o in objs}) == 1 else "no"
        out.append(_question("Are all the shapes the same color?", "are", "yes/no", truth,
                             _yes_no_others(rng, truth)))
    uniques = [o for o in objs if scene.unique(o)]
    if len(uniques) >= 2:
        a, b = rng.sample(uniques, 2)
        if scene.kind == "ground":
            truth = "yes" if a.z < b.z else "no"
            out.append(_question(f"Is the {a.name} in front of the {b.name}?", "is the", "yes/no", truth,
                                 _yes_no_others(rng, truth)))
        elif abs(a.x - b.x) >= 12:
            truth = "yes" if a.x < b.x else "no"
            out.append(_question(f"Is the {a.name} to the left of the {b.name}?", "is the", "yes/no", truth,
                                 _yes_no_others(rng, truth)))
    return out


def number_questions(rng: random.Random, scene: Scene) -> list[dict]:
    objs, out = scene.objects, []
    n = len(objs)
    noun = "object" if scene.kind == "ground" else "shape"
    text = "How many objects are on the ground?" if scene.kind == "ground" else "How many shapes are there?"
    out.append(_question(text, "how many", "number", str(n), _number_others(rng, n, noun)))
    shape = rng.choice(SHAPES)
    k = scene.count(lambda o: o.shape == shape)
    out.append(_question(f"How many {shape}s are in the image?", "how many", "number", str(k),
                         _number_others(rng, k, shape)))
    colour = rng.choice([o.colour for o in objs])
    k = scene.count(lambda o: o.colour == colour)
    out.append(_question(f"How many {colour} shapes are there?", "how many", "number", str(k),
                         _number_others(rng, k, "shape")))
    return out


def other_questions(rng: random.Random, scene: Scene) -> list[dict]:
    objs, out = scene.objects, []
    for o in objs:
        if scene.count(lambda p, o=o: p.shape == o.shape) == 1:
            out.append(_question(f"What color is the {o.shape}?", "what color is the", "other", o.colour,
                                 _colour_others(rng, o.colour)))
        if scene.count(lambda p, o=o: p.colour == o.colour) == 1:
            words = SHAPE_WORDS[o.shape]
            others = [(w, 2) for w in words[1:]] + [(o.shape.capitalize(), 1), (_typo(rng, o.shape), 0.5)]
            out.append(_question(f"What shape is the {o.colour} object?", "what", "other", o.shape, others))
    names, floor = (BACKGROUNDS, "background") if scene.kind == "flat" else (FLOORS, "ground")
    words = names[scene.background][1]
    out.append(_question(f"What color is the {floor}?", "what color is the", "other", words[0],
                         [(w, 2) for w in words[1:]] + [(words[0].capitalize(), 1)]))
    if scene.kind == "ground":
        near = min(objs, key=lambda o: o.z)
        out.append(_question("Which object is closest to the camera?", "which", "other", near.name,
                             _object_others(rng, near, scene)))
    else:
        by_x = sorted(objs, key=lambda o: o.x)
        if len(objs) >= 2 and scene.unique(by_x[0]) and by_x[1].x - by_x[0].x >= 10:
            out.append(_question("Which shape is on the far left?", "which", "other", by_x[0].name,
                                 _object_others(rng, by_x[0], scene)))
        by_r = sorted(objs, key=lambda o: -o.r)
        if len(objs) >= 2 and scene.unique(by_r[0]) and by_r[0].r - by_r[1].r >= 2.0:
            out.append(_question("What is the biggest shape?", "what is the", "other", by_r[0].name,
                                 _object_others(rng, by_r[0], scene)))
    return out


def make_vqa_items(rng: random.Random, index: int) -> list[dict]:
    """One scene and its three questions: one yes/no, one "other", and a number or another "other"."""
    scene = ground_scene(rng) if rng.random() < 0.25 else flat_scene(rng, 1, 6)
    third = "number" if index == 0 or rng.random() < 0.55 else "other"
    pools = {"yes/no": yes_no_questions(rng, scene), "number": number_questions(rng, scene),
             "other": other_questions(rng, scene)}
    picked = [rng.choice(pools["yes/no"])]
    rest = pools["other"]
    first_other = rng.choice(rest)
    picked.append(first_other)
    if third == "number":
        picked.append(rng.choice(pools["number"]))
    else:
        rest = [q for q in rest if q["question"] != first_other["question"]]
        picked.append(rng.choice(rest) if rest else rng.choice(pools["number"]))
    rng.shuffle(picked)
    image_id = 100000 + index
    items = []
    for k, q in enumerate(picked):
        answers = human_answers(rng, q["main"], q["others"], q["answer_type"])
        counts = collections.Counter(a["answer"] for a in answers)
        items.append(dict(
            question_type=q["question_type"], multiple_choice_answer=counts.most_common(1)[0][0], answers=answers,
            image_id=image_id, answer_type=q["answer_type"], question_id=image_id * 1000 + k,
            question=q["question"], image=scene.image,
        ))
    return items


def generate_vqa(n_images: int = N_VQA_IMAGES, seed: int = VQA_SEED) -> list[dict]:
    """All VQA items, as plain dicts in lmms-lab/VQAv2's schema (image as a PIL image)."""
    rng = random.Random(seed)
    return [item for i in range(n_images) for item in make_vqa_items(rng, i)]
