"""Image-question-answer pairs for pre-training the tiny base: grounding, not CV-Bench's questions.

Scenes come from the same drawing code as cvbench_mini (flat 2D shape scenes, and perspective 3D scenes
on a ground plane, some objects marked with coloured boxes), but the questions are open-ended and worded
differently from CV-Bench's four templates, and answers are words ("orange", "3", "left", "the black
square"). `multiple_choice` adds lettered multiple-choice versions of three OTHER kinds of question (colour,
shape, what a coloured box holds), so that the base knows the answer-with-a-letter format; CV-Bench's own
kinds (counting, relative position, depth, distance) are only ever asked open-ended. Fine-tuning on
cvbench_mini's train split then has something to add beyond the format: the four tasks themselves.

Each call to `scene_examples` draws one scene and returns all the open-ended question/answer pairs it supports.
"""

from __future__ import annotations

import math
import random

from PIL import Image

from vlm_peft_bench.scoring.cvbench import POST_PROMPT
from vlm_peft_bench_build.synthetic.cvbench_scenes import (
    BOX_COLOURS,
    COLOURS,
    LETTERS,
    PALETTES,
    SHAPES,
    _box_around,
    _class_name,
    _draw_box,
    _draw_objects_3d,
    _draw_shape,
    _place_2d,
    _place_3d,
    _scene_2d,
    _scene_3d,
    format_prompt,
)

MC_POST_PROMPT = POST_PROMPT  # the same instruction as cvbench's, so the base learns the format

NUMBER_WORDS = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _plural(name: str, n: int) -> str:
    return name if n == 1 else name + "s"


def _caption(names: list[str]) -> str:
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    parts = [f"{NUMBER_WORDS[c]} {_plural(n, c)}" for n, c in sorted(counts.items())]
    if not parts:
        return "nothing, only the background."
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{body}."


def _unique(objects: list[tuple[str, str]], index: int) -> bool:
    return sum(o == objects[index] for o in objects) == 1


def scene_2d(rng: random.Random) -> tuple[Image.Image, list[tuple[str, str]], list[tuple[float, float]], dict]:
    """A flat scene of 0-6 shapes; some scenes mark two distinct objects with a red and a blue box."""
    n = rng.randint(0, 6)
    objects = [(rng.choice(list(COLOURS)), rng.choice(SHAPES)) for _ in range(n)]
    radii = [rng.uniform(5, 8) for _ in range(n)]
    centres = _place_2d(rng, radii)
    img, draw = _scene_2d(rng, rng.choice(list(PALETTES)))
    for (colour, shape), (cx, cy), r in zip(objects, centres, radii):
        _draw_shape(draw, shape, cx, cy, r, COLOURS[colour])
    boxed = {}
    candidates = [i for i in range(n) if _unique(objects, i)]
    if len(candidates) >= 2 and rng.random() < 0.5:
        for box_colour, i in zip(("red", "blue"), rng.sample(candidates, 2)):
            _draw_box(draw, _box_around(*centres[i], radii[i]), box_colour)
            boxed[box_colour] = i
    return img, objects, centres, boxed


def qa_2d(rng: random.Random) -> tuple[Image.Image, list[tuple[str, str]]]:
    img, objects, centres, boxed = scene_2d(rng)
    names = [_class_name(*o) for o in objects]
    qa = [("Describe the image.", _caption(names)),
          ("How many shapes are there?", str(len(objects)))]
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    target = _class_name(colour, shape)
    qa.append((f"Count the {target}s.", str(names.count(target))))
    if objects:
        present = rng.choice(names)
        qa.append((f"Count the {present}s.", str(names.count(present))))
        asked = rng.choice(SHAPES)
        qa.append((f"How many {asked}s can you see?", str(sum(o[1] == asked for o in objects))))
    for c, s in objects:
        if sum(o[1] == s for o in objects) == 1:
            qa.append((f"What colour is the {s}?", c))
        if sum(o[0] == c for o in objects) == 1:
            qa.append((f"What shape is the {c} object?", s))
    uniques = [i for i in range(len(objects)) if _unique(objects, i)]
    if len(uniques) >= 2:
        a, b = rng.sample(uniques, 2)
        dx, dy = centres[a][0] - centres[b][0], centres[a][1] - centres[b][1]
        if abs(dx) >= 10:
            qa.append((f"Is the {names[a]} to the left of the {names[b]}?", "yes" if dx < 0 else "no"))
        if abs(dy) >= 10:
            qa.append((f"Is the {names[a]} higher than the {names[b]}?", "yes" if dy < 0 else "no"))
        if max(abs(dx), abs(dy)) >= 15:
            word = ("left" if dx < 0 else "right") if abs(dx) >= abs(dy) else ("above" if dy < 0 else "below")
            qa.append((f"Where is the {names[a]} compared with the {names[b]}?", word))
    for box_colour, i in boxed.items():
        qa.append((f"What is inside the {box_colour} box?", f"the {names[i]}"))
    if len(boxed) == 2:
        dx = centres[boxed["red"]][0] - centres[boxed["blue"]][0]
        if abs(dx) >= 10:
            qa.append(("Is the red box left or right of the blue box?", "left" if dx < 0 else "right"))
    return img, qa


def qa_3d(rng: random.Random) -> tuple[Image.Image, list[tuple[str, str]]]:
    n = rng.randint(2, 4)
    objects: list[tuple[str, str]] = []
    while len(objects) < n:  # distinct classes, so every object can be named
        o = (rng.choice(list(COLOURS)), rng.choice(SHAPES))
        if o not in objects:
            objects.append(o)
    pts = _place_3d(rng, n)
    img, draw = _scene_3d(rng)
    boxes = _draw_objects_3d(draw, objects, pts)
    names = [_class_name(*o) for o in objects]
    marked = rng.sample(range(n), rng.randint(0, min(n, 3)))
    for box_colour, i in zip(BOX_COLOURS, marked):
        _draw_box(draw, boxes[i], box_colour)
    depth = [z for _, z in pts]
    qa = [("Describe the image.", _caption(names)),
          ("Which object is nearest to the camera?", f"the {names[depth.index(min(depth))]}"),
          ("Which object is farthest from the camera?", f"the {names[depth.index(max(depth))]}")]
    a, b = rng.sample(range(n), 2)
    if max(depth[a], depth[b]) / min(depth[a], depth[b]) > 1.2:
        closer = a if depth[a] < depth[b] else b
        qa.append((f"Of the {names[a]} and the {names[b]}, which is closer to us?", f"the {names[closer]}"))
        qa.append((f"Is the {names[a]} in front of the {names[b]}?", "yes" if closer == a else "no"))
    if n >= 3:
        r, a, b = rng.sample(range(n), 3)
        da, db = math.dist(pts[r], pts[a]), math.dist(pts[r], pts[b])
        if max(da, db) / min(da, db) > 1.3:
            near = a if da < db else b
            qa.append((f"Which is nearer to the {names[r]} in the scene, the {names[a]} or the {names[b]}?",
                       f"the {names[near]}"))
        others = [i for i in range(n) if i != r]
        dists = [math.dist(pts[r], pts[i]) for i in others]
        order = sorted(dists)
        if order[1] / order[0] > 1.3:
            qa.append((f"What stands closest to the {names[r]}?", f"the {names[others[dists.index(order[0])]]}"))
    for box_colour, i in zip(BOX_COLOURS, marked):
        qa.append((f"What is inside the {box_colour} box?", f"the {names[i]}"))
    return img, qa


def scene_examples(rng: random.Random) -> tuple[Image.Image, list[tuple[str, str]]]:
    """One scene (2D or 3D, equally often) and every question/answer pair it supports."""
    return qa_2d(rng) if rng.random() < 0.5 else qa_3d(rng)


def corpus_sample(n_scenes: int = 400, seed: int = 7) -> list[str]:
    """Question and answer texts from a few scenes, for training the tiny tokenizer."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n_scenes):
        _, qa = scene_examples(rng)
        for q, a in qa:
            texts += [q, a]
    return texts


def _distractors(rng: random.Random, question: str, answer: str) -> list[str] | None:
    """Wrong options for the three multiple-choice kinds; None for every other kind of question."""
    if question.startswith("What colour is the "):
        return rng.sample([c for c in COLOURS if c != answer], rng.randint(1, 3))
    if question.startswith("What shape is the "):
        return rng.sample([s for s in SHAPES if s != answer], rng.randint(1, 3))
    if question.startswith("What is inside the ") and answer.startswith("the "):
        colour, shape = answer[4:].split(" ")
        # same colour or same shape as the right answer, so that one glance at the scene is not enough
        near = [_class_name(c, shape) for c in COLOURS if c != colour] + [_class_name(colour, s) for s in SHAPES
                                                                          if s != shape]
        return rng.sample(near, rng.randint(1, 3))
    return None


def multiple_choice(rng: random.Random, qa: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Lettered multiple-choice versions of the colour, shape and box questions in `qa`.

    Prompts follow CV-Bench's layout (question, "Select from the following choices.", one "(X) option" per
    line, then the usual answer-with-a-letter instruction); the answer is the bare letter, as in training on
    CV-Bench, and the right option's position is uniform over the 2-4 options.
    """
    out = []
    for question, answer in qa:
        wrong = _distractors(rng, question, answer)
        if wrong is None:
            continue
        right = answer[4:] if answer.startswith("the ") else answer
        options = [right, *wrong]
        rng.shuffle(options)
        out.append((format_prompt(question, options) + MC_POST_PROMPT, LETTERS[options.index(right)]))
    return out
