"""Procedural COCO-Captions-style and VQAv2-style items with known truth (the `*_mini` twins' data).

Scenes are drawn with cvbench_mini's helpers: flat scenes of coloured shapes on a named background, and
perspective scenes of shapes standing on a named floor (nearer objects are larger and lower). Everything a
caption or an answer says is computed from the scene itself, so every reference is true of its image.

* Captions: each image has five references written the way different people would write them (counts as words,
  lists of objects, layout, background, casing and punctuation that vary, some "coloured"/"colored").
* VQA: each image has three questions; each question has ten human answers with realistic agreement and
  disagreement: digits and number words ("2", "two"), yes/no with an occasional dissenter, colours with
  near-misses ("orange" / "yellow"), multi-word answers ("red circle", "the red circle"), articles, casing,
  trailing periods and the odd typo. `multiple_choice_answer` is the most common of the ten answers, and
  `answer_type` is "yes/no", "number" or "other", as in VQAv2.

Everything is drawn from one seeded ``random.Random``: the same seed gives the same items and pixels.
"""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from vlm_peft_bench.synthetic.cvbench_scenes import (
    COLOURS,
    HORIZON,
    IMAGE_SIZE,
    SHAPES,
    _draw_objects_3d,
    _draw_shape,
    _place_2d,
    _place_3d,
    _project,
)

CAPTION_SEED = 2017
VQA_SEED = 2015
N_CAPTION_IMAGES = 200
N_VQA_IMAGES = 100
QUESTIONS_PER_IMAGE = 3

# The question text lmms-lab/COCO-Caption2017 rows carry (our tasks prompt with their own fixed text instead).
COCO_QUESTION = "Please carefully observe the image and come up with a caption for the image"

# Background and floor colours with the words people use for them (the first word is the main one).
BACKGROUNDS = {
    "beige": ((222, 205, 180), ["beige", "tan", "light brown", "cream"]),
    "grey": ((200, 200, 200), ["grey", "gray", "light gray", "silver"]),
    "white": ((245, 245, 245), ["white", "light gray", "off white"]),
    "light blue": ((160, 195, 230), ["light blue", "blue", "sky blue", "pale blue"]),
    "pink": ((240, 200, 210), ["pink", "light pink", "salmon"]),
}
FLOORS = {
    "green": ((120, 150, 90), ["green", "grass", "dark green", "olive"]),
    "brown": ((150, 120, 90), ["brown", "dirt", "tan", "light brown"]),
    "grey": ((130, 130, 130), ["grey", "gray", "concrete", "dark gray"]),
}
SKY = (170, 200, 235)

NUMBER_WORDS = {0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}
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


@dataclass
class Obj:
    colour: str
    shape: str
    x: float  # centre on screen
    y: float
    r: float
    z: float | None = None  # distance from the camera (ground scenes only)

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Scene:
    image: Image.Image
    objects: list[Obj]
    background: str  # a key of BACKGROUNDS (flat) or FLOORS (ground)
    kind: str  # "flat" or "ground"

    def count(self, pred) -> int:
        return sum(1 for o in self.objects if pred(o))

    def unique(self, o: Obj) -> bool:
        return self.count(lambda p: p.name == o.name) == 1


# --- scenes -------------------------------------------------------------------------------------------------


def _pick_objects(rng: random.Random, n: int, distinct: bool) -> list[tuple[str, str]]:
    """n (colour, shape) pairs; when not distinct, classes repeat so that counts above one are common."""
    classes = [(c, s) for c in COLOURS for s in SHAPES]
    if distinct:
        return rng.sample(classes, n)
    kinds = rng.sample(classes, rng.randint(1, min(n, 3)))
    return [kinds[i] if i < len(kinds) else rng.choice(kinds) for i in range(n)]


def flat_scene(rng: random.Random, n_min: int = 1, n_max: int = 5) -> Scene:
    n = rng.randint(n_min, n_max)
    specs = _pick_objects(rng, n, distinct=rng.random() < 0.4)
    radii = [rng.uniform(6, 11) for _ in range(n)]
    centres = _place_2d(rng, radii, margin=4.0)
    background = rng.choice(list(BACKGROUNDS))
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUNDS[background][0])
    draw = ImageDraw.Draw(img)
    objects = []
    for (colour, shape), (cx, cy), r in zip(specs, centres, radii):
        _draw_shape(draw, shape, cx, cy, r, COLOURS[colour])
        objects.append(Obj(colour, shape, cx, cy, r))
    return Scene(img, objects, background, "flat")


def ground_scene(rng: random.Random) -> Scene:
    """2-3 distinct shapes standing on a floor, seen by cvbench_mini's pinhole camera."""
    n = rng.randint(2, 3)
    specs = _pick_objects(rng, n, distinct=True)
    while True:
        pts = _place_3d(rng, n)
        depths = sorted(z for _, z in pts)
        if all(b / a > 1.3 for a, b in zip(depths, depths[1:])):  # a clear nearest/farthest order
            break
    floor = rng.choice(list(FLOORS))
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), SKY)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, HORIZON, IMAGE_SIZE, IMAGE_SIZE], fill=FLOORS[floor][0])
    _draw_objects_3d(draw, specs, pts)
    objects = []
    for (colour, shape), (x, z) in zip(specs, pts):
        u, v, r = _project(x, z, 1.0)
        objects.append(Obj(colour, shape, u, v, r, z))
    return Scene(img, objects, floor, "ground")


# --- captions -----------------------------------------------------------------------------------------------


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _plural(word: str, n: int) -> str:
    return word if n == 1 else word + "s"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _counted(scene: Scene, key, digits: bool = False) -> str:
    """'two orange circles and a black square' (grouped by `key`, most frequent first)."""
    counts = collections.Counter(key(o) for o in scene.objects)
    parts = []
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        words = name.split()
        if n == 1:
            parts.append(f"{_article(name)} {name}")
        else:
            parts.append(f"{n if digits else NUMBER_WORDS[n]} {' '.join(words[:-1] + [_plural(words[-1], n)])}")
    return _join(parts)


def _where(o: Obj) -> str:
    third = IMAGE_SIZE / 3
    row = "top" if o.y < third else ("bottom" if o.y > 2 * third else "middle")
    col = "left" if o.x < third else ("right" if o.x > 2 * third else "centre")
    if row == "middle" and col == "centre":
        return "in the middle"
    if row == "middle":
        return f"on the {col}"
    if col == "centre":
        return f"at the {row}"
    return f"in the {row} {col}"


def _shapes_sentence(scene: Scene, shapes: str) -> str:
    colours = sorted({o.colour for o in scene.objects})
    if len(colours) > 1:
        return f"{shapes} drawn in different colors."
    if len(scene.objects) > 1:
        return f"{shapes}, {'both' if len(scene.objects) == 2 else 'all of them'} {colours[0]}."
    return f"Just one {scene.objects[0].shape} in the picture, and it is {colours[0]}."


def caption_candidates(rng: random.Random, scene: Scene) -> list[str]:
    """True one-sentence descriptions of the scene, in several human styles (at least five)."""
    objs = scene.objects
    n = len(objs)
    names = _counted(scene, lambda o: o.name)
    shapes = _counted(scene, lambda o: o.shape)
    bg = rng.choice(BACKGROUNDS[scene.background][1] if scene.kind == "flat" else FLOORS[scene.background][1])
    coloured = rng.choice(["coloured", "colored", "colorful"])
    many = "shape" if n == 1 else "shapes"
    ground = "background" if scene.kind == "flat" else "floor"
    out = [
        f"{names}.",
        f"A picture with {NUMBER_WORDS[n]} {many}: {names}.",
        f"{_counted(scene, lambda o: o.name, digits=True)} on a {bg} {ground}",
        _shapes_sentence(scene, shapes),
        f"An image of {n} {coloured} {many}.",
    ]
    if scene.kind == "flat":
        out += [
            f"{NUMBER_WORDS[n].capitalize()} {coloured} {many} on a plain {bg} background.",
            f"simple {many} on a {bg} backdrop",
            f"A computer drawing of {names} on {bg}.",
        ]
        if n <= 3:
            out.append(_join([f"{_article(o.name)} {o.name} {_where(o)}" for o in objs]).capitalize() + ".")
        if n == 1:
            out.append(f"A single {objs[0].name} {_where(objs[0])}.")
        if n == 2 and abs(objs[0].x - objs[1].x) >= 12:
            left, right = sorted(objs, key=lambda o: o.x)
            out.append(f"{_article(left.name).capitalize()} {left.name} to the left of {_article(right.name)} "
                       f"{right.name}.")
    else:
        near = min(objs, key=lambda o: o.z)
        far = max(objs, key=lambda o: o.z)
        out += [
            f"{names} standing on {rng.choice(['the ground', 'a floor', 'the floor'])}.",
            f"{_article(near.name).capitalize()} {near.name} in front of {_article(far.name)} {far.name}.",
            f"Shapes on a {bg} floor under a blue sky.",
            f"the {near.name} is closer to the camera than the {far.name}",
        ]
    return out


def _humanize(rng: random.Random, text: str) -> str:
    """Casing and final punctuation as people type them."""
    if rng.random() < 0.25:
        text = text[0].lower() + text[1:]
    elif text[0].islower():
        text = text[0].upper() + text[1:]
    if rng.random() < 0.2:
        text = text.rstrip(".")
    return text


def make_caption_item(rng: random.Random, index: int) -> dict:
    scene = ground_scene(rng) if rng.random() < 0.25 else flat_scene(rng)
    candidates = list(dict.fromkeys(caption_candidates(rng, scene)))
    refs = [_humanize(rng, c) for c in rng.sample(candidates, 5)]
    image_id = index + 1
    file_name = f"{image_id:012d}.png"
    return dict(
        question_id=file_name, image=scene.image, question=COCO_QUESTION, answer=refs, id=image_id, license=0,
        file_name=file_name, coco_url=f"synthetic://coco_captions_mini/{file_name}", height=IMAGE_SIZE,
        width=IMAGE_SIZE, date_captured="2024-01-01 00:00:00",
    )


def generate_captions(n: int = N_CAPTION_IMAGES, seed: int = CAPTION_SEED) -> list[dict]:
    """All caption items, as plain dicts in lmms-lab/COCO-Caption2017's schema (image as a PIL image)."""
    rng = random.Random(seed)
    return [make_caption_item(rng, i) for i in range(n)]


# --- VQA ----------------------------------------------------------------------------------------------------

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
            (f"{n} {_plural(noun, n)}", 1), (NUMBER_WORDS[n].capitalize(), 0.5)]


def _yes_no_others(rng: random.Random, answer: str) -> list[tuple[str, float]]:
    other = "no" if answer == "yes" else "yes"
    return [(other, 3), (answer.capitalize(), 2), (answer + ".", 1), ("yep" if answer == "yes" else "nope", 0.5)]


def _colour_others(rng: random.Random, colour: str) -> list[tuple[str, float]]:
    return ([(near, 2) for near in NEAR_COLOURS[colour]]
            + [(colour.capitalize(), 1.5), (colour + ".", 1), (_typo(rng, colour), 1), (f"{colour} color", 0.5)])


def _object_others(rng: random.Random, o: Obj, scene: Scene) -> list[tuple[str, float]]:
    wrong = [p.name for p in scene.objects if p.name != o.name]
    pairs = [(f"the {o.name}", 3), (o.shape, 2), (f"{_article(o.name)} {o.name}", 1.5), (o.colour, 1),
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
    out.append(_question(f"Is there {_article(c)} {c} {s} in the picture?", "is there a", "yes/no", truth,
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
