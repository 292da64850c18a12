"""Unusual but valid images (palette, CMYK, alpha, grey, huge, one pixel wide) become ordinary model inputs, and
a zero-byte image row is named before any model work."""

import datasets
import pytest
import torch
from PIL import Image

from vlm_peft_bench.lmms.dataset_task import DatasetError, check_images
from vlm_peft_bench.nanollava.loading import load_nanollava

ODD_IMAGES = {
    "palette": Image.new("P", (40, 30), 3),
    "cmyk": Image.new("CMYK", (30, 50), (0, 255, 255, 0)),
    "rgba": Image.new("RGBA", (64, 64), (255, 0, 0, 0)),
    "grey16": Image.new("I;16", (20, 20), 1000),
    "huge": Image.new("RGB", (4000, 300), (10, 200, 30)),
    "sliver": Image.new("RGB", (1, 90), (0, 0, 255)),
}


@pytest.fixture(scope="module")
def loaded():
    return load_nanollava("nanollava-tiny")


@pytest.mark.parametrize("kind", sorted(ODD_IMAGES))
def test_odd_images_give_standard_pixel_values_and_finite_logits(loaded, kind):
    batch = loaded.processor(["What colour is the square?"], [ODD_IMAGES[kind]])
    size = loaded.model.config.vision_config.image_size
    assert batch["pixel_values"].shape == (1, 3, size, size)
    with torch.no_grad():
        logits = loaded.model(**batch).logits
    assert torch.isfinite(logits).all()


def test_zero_byte_image_row_is_named():
    good = Image.new("RGB", (8, 8))
    features = datasets.Features({"image": datasets.Image()})
    data = datasets.Dataset.from_dict({"image": [good, good, good]}, features=features)
    raw = data.cast_column("image", datasets.Image(decode=False)).to_list()
    raw[2]["image"] = {"bytes": b"", "path": None}
    broken = datasets.Dataset.from_list(raw, features=datasets.Features({"image": datasets.Image(decode=False)}))
    check_images(broken, "image", "t", "test", range(2))  # the rows a --limit 2 run evaluates are fine
    with pytest.raises(DatasetError, match="split test row 2 .*cannot be decoded"):
        check_images(broken, "image", "t", "test")
