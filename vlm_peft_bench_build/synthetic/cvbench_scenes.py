"""Procedural CV-Bench-style items with known ground truth (the `cvbench_mini` data).

Every item follows the exact schema of nyu-visionx/CV-Bench (idx, type, task, image, question, choices,
answer, prompt, filename, source, source_dataset, source_filename, target_class, target_size, bbox) and the
wording of its four question templates. Scenes are drawn with PIL:

* 2D items (Count, Relation) are flat scenes of coloured shapes. CV-Bench's 2D items come from two sources
  that the official score averages separately; we keep the two strata under the same labels ("ADE20K" for an
  indoor-style palette, "COCO" for an outdoor-style palette) so the official formula applies unchanged.
  ``source_dataset`` says plainly that the scenes are synthetic.
* 3D items (Depth, Distance, stratum "Omni3D") are perspective scenes: objects stand on a ground plane and
  are projected with a pinhole camera, so nearer objects are larger and lower in the picture. Ground truth
  comes from the 3D coordinates, not from the picture.

Everything is drawn from one seeded ``random.Random``: the same seed gives the same items and pixels.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

IMAGE_SIZE = 96
LETTERS = "ABCDEFGH"
SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "orange": (245, 140, 20),
    "purple": (130, 50, 170),
    "yellow": (235, 215, 30),
    "cyan": (40, 200, 210),
    "black": (20, 20, 20),
}
BOX_COLOURS = {"red": (230, 0, 0), "blue": (0, 60, 240), "green": (0, 170, 0)}
PALETTES = {  # background colours per 2D stratum
    "ADE20K": [(222, 205, 180), (200, 190, 175), (235, 225, 210)],
    "COCO": [(150, 200, 140), (160, 195, 230), (190, 215, 160)],
}
SOURCE_DATASET = {
    "ADE20K": "cvbench_mini synthetic (2D, ADE20K stratum)",
    "COCO": "cvbench_mini synthetic (2D, COCO stratum)",
    "Omni3D": "cvbench_mini synthetic (3D, Omni3D stratum)",
}

COUNT_TEMPLATE = "How many {cls}s are in the image?"
RELATION_TEMPLATE = (
    "Considering the relative positions of the {a} (annotated by the red box) and the {b} (annotated by the"
    " blue box) in the image provided, where is the {a} located with respect to the {b}?"
)
DEPTH_TEMPLATE = (
    "Which object is closer to the camera taking this photo, the {a} (highlighted by a red box) or the {b}"
    " (highlighted by a blue box)?"
)
DISTANCE_TEMPLATE = (
    "Estimate the real-world distances between objects in this image. Which object is closer to the {r}"
    " (highlighted by a red box), the {a} (highlighted by a blue box) or the {b} (highlighted by a green box)?"
)
CHOICE_SUFFIX = " Select from the following choices."

# Items per task in each split; the test split mirrors CV-Bench's task proportions.
SPLIT_SIZES = {
    "test": {"Count": 240, "Relation": 200, "Depth": 180, "Distance": 180},
    "train": {"Count": 1200, "Relation": 1000, "Depth": 900, "Distance": 900},
}
SPLIT_SEEDS = {"test": 2638, "train": 1438}
# The first, smaller splits (320 / 1,600 items): the tiny tokenizer was trained on their texts, so rebuilding
# it (`tiny.tokenizer_corpus`) draws these sizes, whatever SPLIT_SIZES holds now.
TOKENIZER_SPLIT_SIZES = {
    "test": {"Count": 96, "Relation": 80, "Depth": 72, "Distance": 72},
    "train": {"Count": 480, "Relation": 400, "Depth": 360, "Distance": 360},
}


@dataclass
class Placed:
    """An object drawn in a scene: class name and its pixel bounding box (x0, y0, x1, y1)."""

    name: str
    box: tuple[float, float, float, float]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _class_name(colour: str, shape: str) -> str:
    return f"{colour} {shape}"


def _random_class(rng: random.Random, exclude: set[str] = frozenset()) -> tuple[str, str]:
    while True:
        colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
        if _class_name(colour, shape) not in exclude:
            return colour, shape


def _place_2d(rng: random.Random, radii: list[float], margin: float = 3.0) -> list[tuple[float, float]]:
    """Non-overlapping centres for circles of the given radii inside the image."""
    for _ in range(200):
        centres: list[tuple[float, float]] = []
        for r in radii:
            for _ in range(100):
                c = (rng.uniform(r + 2, IMAGE_SIZE - r - 2), rng.uniform(r + 2, IMAGE_SIZE - r - 2))
                if all(math.dist(c, o) > r + ro + margin for o, ro in zip(centres, radii)):
                    centres.append(c)
                    break
            else:
                break
        if len(centres) == len(radii):
            return centres
    raise RuntimeError("could not place objects without overlap")


def _box_around(cx: float, cy: float, r: float, pad: float = 2.0) -> tuple[float, float, float, float]:
    return (cx - r - pad, cy - r - pad, cx + r + pad, cy + r + pad)


def _choices(rng: random.Random, correct: str, others: list[str]) -> tuple[list[str], str]:
    choices = [correct, *others]
    rng.shuffle(choices)
    return choices, f"({LETTERS[choices.index(correct)]})"


def format_prompt(question: str, choices: list[str]) -> str:
    """CV-Bench's `prompt` field: question, the choice instruction, then one `(X) choice` per line."""
    lines = [question + CHOICE_SUFFIX] + [f"({LETTERS[i]}) {c}" for i, c in enumerate(choices)]
    return "\n".join(lines)


def _scene_2d(rng: random.Random, source: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), rng.choice(PALETTES[source]))
    return img, ImageDraw.Draw(img)


def make_count(rng: random.Random, source: str) -> dict:
    colour, shape = _random_class(rng)
    target = _class_name(colour, shape)
    n_target = rng.randint(0, 5)
    n_distract = rng.randint(0, 6 - n_target) if n_target < 6 else 0
    distractors = [_random_class(rng, exclude={target}) for _ in range(n_distract)]
    radii = [rng.uniform(5, 8) for _ in range(n_target + n_distract)]
    centres = _place_2d(rng, radii)
    img, draw = _scene_2d(rng, source)
    bboxes = []
    specs = [(colour, shape)] * n_target + distractors
    for (col, shp), (cx, cy), r in zip(specs, centres, radii):
        _draw_shape(draw, shp, cx, cy, r, COLOURS[col])
        if (col, shp) == (colour, shape):
            bboxes.append(list(_box_around(cx, cy, r, pad=0)))
    wrong = rng.sample([n for n in range(0, 7) if n != n_target], 3)
    choices, answer = _choices(rng, str(n_target), [str(n) for n in wrong])
    question = COUNT_TEMPLATE.format(cls=target)
    return dict(image=img, question=question, choices=choices, answer=answer, target_class=target,
                target_size=n_target, bbox=bboxes)


def _draw_box(draw: ImageDraw.ImageDraw, box, colour: str) -> None:
    draw.rectangle(list(box), outline=BOX_COLOURS[colour], width=2)


def make_relation(rng: random.Random, source: str) -> dict:
    a_col, a_shp = _random_class(rng)
    b_col, b_shp = _random_class(rng, exclude={_class_name(a_col, a_shp)})
    axis = rng.choice(("horizontal", "vertical"))
    img, draw = _scene_2d(rng, source)
    ra, rb = rng.uniform(6, 9), rng.uniform(6, 9)
    while True:  # a clear separation (at least 20 px) along the asked axis
        (ax, ay), (bx, by) = _place_2d(rng, [ra, rb])
        delta = (ax - bx) if axis == "horizontal" else (ay - by)
        if abs(delta) >= 20:
            break
    n_distract = rng.randint(0, 2)
    distract_radii = [rng.uniform(4, 6) for _ in range(n_distract)]
    placed = [(ax, ay), (bx, by)]
    for r in distract_radii:  # distractors away from the two annotated objects
        for _ in range(100):
            c = (rng.uniform(r + 2, IMAGE_SIZE - r - 2), rng.uniform(r + 2, IMAGE_SIZE - r - 2))
            if all(math.dist(c, p) > 18 for p in placed):
                col, shp = _random_class(rng)
                _draw_shape(draw, shp, c[0], c[1], r, COLOURS[col])
                placed.append(c)
                break
    _draw_shape(draw, a_shp, ax, ay, ra, COLOURS[a_col])
    _draw_shape(draw, b_shp, bx, by, rb, COLOURS[b_col])
    box_a, box_b = _box_around(ax, ay, ra), _box_around(bx, by, rb)
    _draw_box(draw, box_a, "red")
    _draw_box(draw, box_b, "blue")
    if axis == "horizontal":
        correct, other = ("left", "right") if delta < 0 else ("right", "left")
    else:
        correct, other = ("above", "below") if delta < 0 else ("below", "above")
    choices, answer = _choices(rng, correct, [other])
    a, b = _class_name(a_col, a_shp), _class_name(b_col, b_shp)
    question = RELATION_TEMPLATE.format(a=a, b=b)
    return dict(image=img, question=question, choices=choices, answer=answer, target_class=f"{a}, {b}",
                target_size=None, bbox=[list(box_a), list(box_b)])


# A pinhole camera 1.5 units above a ground plane, looking along +z.
FOCAL = 60.0
CAMERA_HEIGHT = 1.5
HORIZON = 30.0


def _project(x: float, z: float, height: float) -> tuple[float, float, float]:
    """Screen centre x, centre y and radius of an object of `height` standing at ground point (x, z)."""
    u = IMAGE_SIZE / 2 + FOCAL * x / z
    v_ground = HORIZON + FOCAL * CAMERA_HEIGHT / z
    r = FOCAL * height / (2 * z)
    return u, v_ground - r, r


def _scene_3d(rng: random.Random) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (170, 200, 235))
    draw = ImageDraw.Draw(img)
    ground = rng.choice([(120, 150, 90), (150, 140, 120), (130, 130, 130)])
    draw.rectangle([0, HORIZON, IMAGE_SIZE, IMAGE_SIZE], fill=ground)
    line = tuple(max(0, c - 30) for c in ground)
    for z in (2.5, 3.5, 5.0, 7.5, 12.0):  # floor lines give a perspective cue
        v = HORIZON + FOCAL * CAMERA_HEIGHT / z
        draw.line([0, v, IMAGE_SIZE, v], fill=line, width=1)
    return img, draw


def _place_3d(rng: random.Random, n: int) -> list[tuple[float, float]]:
    """Ground positions (x, z) whose projections stay inside the image and do not overlap."""
    while True:
        pts = []
        for _ in range(n):
            z = rng.uniform(2.2, 9.0)
            x = rng.uniform(-0.55, 0.55) * z * IMAGE_SIZE / FOCAL
            pts.append((x, z))
        discs = [_project(x, z, 1.0) for x, z in pts]
        inside = all(r + 1 < u < IMAGE_SIZE - r - 1 and v + r < IMAGE_SIZE - 1 for u, v, r in discs)
        apart = all(math.dist(discs[i][:2], discs[j][:2]) > discs[i][2] + discs[j][2] + 3
                    for i in range(n) for j in range(i + 1, n))
        if inside and apart:
            return pts


def _draw_objects_3d(draw, specs, pts) -> list[tuple[float, float, float, float]]:
    boxes = []
    order = sorted(range(len(pts)), key=lambda i: -pts[i][1])  # far to near
    for i in order:
        u, v, r = _project(pts[i][0], pts[i][1], 1.0)
        col, shp = specs[i]
        _draw_shape(draw, shp, u, v, r, COLOURS[col])
        boxes.append((i, _box_around(u, v, r)))
    return [b for _, b in sorted(boxes)]


def make_depth(rng: random.Random) -> dict:
    a = _random_class(rng)
    b = _random_class(rng, exclude={_class_name(*a)})
    while True:
        pts = _place_3d(rng, 2)
        if max(pts[0][1], pts[1][1]) / min(pts[0][1], pts[1][1]) > 1.3:
            break
    img, draw = _scene_3d(rng)
    boxes = _draw_objects_3d(draw, [a, b], pts)
    _draw_box(draw, boxes[0], "red")
    _draw_box(draw, boxes[1], "blue")
    na, nb = _class_name(*a), _class_name(*b)
    correct, other = (na, nb) if pts[0][1] < pts[1][1] else (nb, na)
    choices, answer = _choices(rng, correct, [other])
    question = DEPTH_TEMPLATE.format(a=na, b=nb)
    return dict(image=img, question=question, choices=choices, answer=answer, target_class=f"{na}, {nb}",
                target_size=None, bbox=[list(b) for b in boxes])


def make_distance(rng: random.Random) -> dict:
    r_cls = _random_class(rng)
    a = _random_class(rng, exclude={_class_name(*r_cls)})
    b = _random_class(rng, exclude={_class_name(*r_cls), _class_name(*a)})
    while True:
        pts = _place_3d(rng, 3)
        da, db = math.dist(pts[0], pts[1]), math.dist(pts[0], pts[2])
        if max(da, db) / min(da, db) > 1.5:
            break
    img, draw = _scene_3d(rng)
    boxes = _draw_objects_3d(draw, [r_cls, a, b], pts)
    for box, colour in zip(boxes, ("red", "blue", "green")):
        _draw_box(draw, box, colour)
    nr, na, nb = _class_name(*r_cls), _class_name(*a), _class_name(*b)
    correct, other = (na, nb) if da < db else (nb, na)
    choices, answer = _choices(rng, correct, [other])
    question = DISTANCE_TEMPLATE.format(r=nr, a=na, b=nb)
    return dict(image=img, question=question, choices=choices, answer=answer,
                target_class=f"{nr}, {na}, {nb}", target_size=None, bbox=[list(b) for b in boxes])


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=9)
    return buf.getvalue()


def generate_split(split: str, sizes: dict[str, int] | None = None) -> list[dict]:
    """All items of one split, as plain dicts in the CV-Bench schema (image as a PIL image); `sizes` (items
    per task) defaults to SPLIT_SIZES."""
    rng = random.Random(SPLIT_SEEDS[split])
    sizes = sizes or SPLIT_SIZES[split]
    plan: list[tuple[str, str]] = []
    for task, n in sizes.items():
        if task in ("Count", "Relation"):  # two 2D strata, as in CV-Bench
            plan += [(task, "ADE20K" if i % 2 == 0 else "COCO") for i in range(n)]
        else:
            plan += [(task, "Omni3D")] * n
    items = []
    for idx, (task, source) in enumerate(plan):
        if task == "Count":
            item = make_count(rng, source)
        elif task == "Relation":
            item = make_relation(rng, source)
        elif task == "Depth":
            item = make_depth(rng)
        else:
            item = make_distance(rng)
        kind = "2D" if source != "Omni3D" else "3D"
        filename = f"img/{kind}/{task.lower()}/{source.lower()}_{split}_{idx}.png"
        items.append(dict(
            idx=idx, type=kind, task=task, image=item["image"], question=item["question"],
            choices=item["choices"], answer=item["answer"],
            prompt=format_prompt(item["question"], item["choices"]), filename=filename, source=source,
            source_dataset=SOURCE_DATASET[source], source_filename=filename,
            target_class=item["target_class"], target_size=item["target_size"], bbox=item["bbox"],
        ))
    return items
