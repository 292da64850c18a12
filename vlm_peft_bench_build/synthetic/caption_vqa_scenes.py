"""Procedural scenes for the COCO-Captions-style and VQAv2-style items with known truth (the `*_mini` twins' data).

Scenes are drawn with cvbench_mini's helpers: flat scenes of coloured shapes on a named background, and
perspective scenes of shapes standing on a named floor (nearer objects are larger and lower). Everything a
caption or an answer says is computed from the scene itself, so every reference is true of its image: the
captions in `caption_references.py`, the questions and human answers in `vqa_answers.py`.

Everything is drawn from one seeded ``random.Random``: the same seed gives the same items and pixels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

from vlm_peft_bench_build.synthetic.cvbench_scenes import (
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


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def plural(word: str, n: int) -> str:
    return word if n == 1 else word + "s"


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
