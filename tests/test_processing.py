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
