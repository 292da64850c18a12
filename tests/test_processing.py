import torch
from PIL import Image

from vlm_peft_bench.nanollava.config import IMAGE_TOKEN
from vlm_peft_bench.nanollava.processing import chatml_prompt, expand_to_square


def test_prompt_is_chatml_with_image_first_and_no_system_turn_by_default():
    assert chatml_prompt("Q?") == f"<|im_start|>user\n{IMAGE_TOKEN}\nQ?<|im_end|>\n<|im_start|>assistant\n"
    with_system = chatml_prompt("Q?", system_prompt="Be brief.")
    assert with_system.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")


def test_expand_to_square_pads_with_mean_colour_and_centres():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    sq = expand_to_square(img)
    assert sq.size == (40, 40)
    assert sq.getpixel((0, 0)) == (127, 127, 127)
    assert sq.getpixel((20, 20)) == (255, 0, 0)
    assert sq.getpixel((20, 9)) == (127, 127, 127) and sq.getpixel((20, 10)) == (255, 0, 0)


def test_pixel_values_are_resized_and_normalised(tiny):
    px = tiny.processor.pixel_values([Image.new("RGB", (100, 30), (255, 255, 255))])
    size = tiny.model.config.vision_config.image_size
    assert px.shape == (1, 3, size, size)
    assert torch.isclose(px[0, :, size // 2, size // 2], torch.ones(3)).all()  # white -> +1
    assert torch.isclose(px[0, :, 0, 0], torch.full((3,), 127 / 255 * 2 - 1)).all()  # padding grey


def test_batch_is_left_padded_with_one_image_token_per_patch(tiny):
    proc = tiny.processor
    batch = proc(["short", "a much longer question about the picture"], [Image.new("RGB", (8, 8))] * 2)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    n_patches = (tiny.model.config.vision_config.image_size // tiny.model.config.vision_config.patch_size) ** 2
    assert ((ids == proc.image_token_id).sum(1) == n_patches).all()
    assert mask[0, 0] == 0 and mask[0, -1] == 1 and mask[1].all()
    assert ids[0, -1] == ids[1, -1]  # both end with the same assistant header token


def _mini_images():
    import datasets

    from vlm_peft_bench.paths import bundled

    ds = datasets.load_dataset("parquet", data_files=str(bundled("tasks/cvbench/mini/test.parquet")), split="train")
    return [ds[i]["image"] for i in range(0, 800, 7)] + [Image.new("RGB", (30, 90), (200, 10, 5))]


# sha256 of the float32 bytes of pixel_values(_mini_images()), computed with transformers 4.45.1's
# SiglipImageProcessor (the one nanoLLaVA was trained with); every stack must give these very pixels.
MINI_PIXELS_SHA256 = "71a46d8ce2e17706"


def test_pixels_are_the_same_on_every_transformers_version(tiny):
    import hashlib

    pixels = tiny.processor.pixel_values(_mini_images())
    assert pixels.dtype == torch.float32 and pixels.shape == (116, 3, 64, 64)
    assert hashlib.sha256(pixels.numpy().tobytes()).hexdigest()[:16] == MINI_PIXELS_SHA256


def test_pixels_equal_transformers_4_siglip_processor(tiny):
    """Where transformers 4.x is installed, its SiglipImageProcessor (PIL resize) gives exactly our pixels."""
    import pytest
    import transformers

    if int(transformers.__version__.split(".")[0]) >= 5:
        pytest.skip(f"transformers {transformers.__version__}: its SiglipImageProcessor resizes differently (the "
                    "reason we write the steps out); the pixel hash test covers this stack")
    from transformers import SiglipImageProcessor

    images = _mini_images()
    reference = SiglipImageProcessor(
        do_resize=True, size={"height": 64, "width": 64}, resample=Image.BICUBIC, do_rescale=True,
        rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
    )([expand_to_square(i.convert("RGB")) for i in images], return_tensors="pt")["pixel_values"]
    assert torch.equal(tiny.processor.pixel_values(images), reference)
