"""COCO-Captions-style items (`coco_captions_mini`'s data): each image has five references written the way different
people would write them (counts as words, lists of objects, layout, background, casing and punctuation that vary,
some "coloured"/"colored"), all true of the scene (`caption_vqa_scenes.py`).
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
from vlm_peft_bench_build.synthetic.cvbench_scenes import IMAGE_SIZE

CAPTION_SEED = 2017
N_CAPTION_IMAGES = 200

# The question text lmms-lab/COCO-Caption2017 rows carry (our tasks prompt with their own fixed text instead).
COCO_QUESTION = "Please carefully observe the image and come up with a caption for the image"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _counted(scene: Scene, key, digits: bool = False) -> str:
    """'two orange circles and a black square' (grouped by `key`, most frequent first)."""
    counts = collections.Counter(key(o) for o in scene.objects)
    parts = []
    for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        words = name.split()
        if n == 1:
            parts.append(f"{article(name)} {name}")
        else:
            parts.append(f"{n if digits else NUMBER_WORDS[n]} {' '.join(words[:-1] + [plural(words[-1], n)])}")
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
            out.append(_join([f"{article(o.name)} {o.name} {_where(o)}" for o in objs]).capitalize() + ".")
        if n == 1:
            out.append(f"A single {objs[0].name} {_where(objs[0])}.")
        if n == 2 and abs(objs[0].x - objs[1].x) >= 12:
            left, right = sorted(objs, key=lambda o: o.x)
            out.append(f"{article(left.name).capitalize()} {left.name} to the left of {article(right.name)} "
                       f"{right.name}.")
    else:
        near = min(objs, key=lambda o: o.z)
        far = max(objs, key=lambda o: o.z)
        out += [
            f"{names} standing on {rng.choice(['the ground', 'a floor', 'the floor'])}.",
            f"{article(near.name).capitalize()} {near.name} in front of {article(far.name)} {far.name}.",
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
