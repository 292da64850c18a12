"""A checkpoint in nanoLLaVA's ORIGINAL layout loads through the converter and gives the native logits."""

import json
import shutil

import torch
from PIL import Image
from safetensors.torch import save_file

from vlm_peft_bench.nanollava.config import TINY_TEXT, TINY_VISION
from vlm_peft_bench.nanollava.layouts import ORIGINAL, native_layout, rename
from vlm_peft_bench.nanollava.loading import TINY_DIR, load_nanollava


def to_original(state, model):
    """The installed model's tensors under the names of qnguyen3/nanoLLaVA's model.safetensors (Bunny's tree)."""
    native = native_layout(model)
    return {rename(key, native, ORIGINAL): value.clone() for key, value in state.items()}


def original_config():
    """config.json as nanoLLaVA publishes it (llava-qwen2), at tiny sizes, plus the tiny vision tower."""
    cfg = {k: v for k, v in TINY_TEXT.items()}
    cfg.update(
        architectures=["LlavaQwen2ForCausalLM"], model_type="llava-qwen2", mm_hidden_size=TINY_VISION["hidden_size"],
        mm_projector_type="mlp2x_gelu", mm_vision_tower="google/siglip-so400m-patch14-384",
        mm_vision_select_layer=-1, mm_vision_select_feature="patch", image_aspect_ratio="pad", torch_dtype="float32",
        vision_config=TINY_VISION,
    )
    return cfg


def test_original_layout_gives_the_native_logits(tmp_path, tiny):
    native = tiny.model
    state = to_original(native.state_dict(), native)
    # Keys exactly as in the published checkpoint.
    for key in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.bias", "lm_head.weight",
                "model.mm_projector.2.weight",
                "model.vision_tower.vision_tower.vision_model.encoder.layers.2.mlp.fc1.weight",
                "model.vision_tower.vision_tower.vision_model.post_layernorm.weight"):
        assert key in state
    assert "model.layers.0.self_attn.o_proj.bias" not in state  # o_proj has no bias in Qwen2
    state["model.vision_tower.vision_tower.vision_model.head.probe"] = torch.zeros(1, 1, 96)  # dropped
    folder = tmp_path / "nanollava-original"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(original_config()))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(TINY_DIR / name, folder / name)

    converted = load_nanollava(str(folder), device="cpu", dtype="float32")
    assert converted.layout == "original"
    image = Image.new("RGB", (80, 50), (200, 30, 30))
    batch = tiny.processor(["How many red squares are in the image?"], [image])
    with torch.no_grad():
        expected = native(**batch).logits
        got = converted.model(**batch).logits
    assert torch.equal(got, expected)


def test_converter_names_come_from_the_model(tiny):
    from vlm_peft_bench.nanollava.layouts import native_prefixes

    prefixes = native_prefixes(tiny.model)
    names = dict(tiny.model.named_parameters())
    assert prefixes["text"] + "embed_tokens.weight" in names
    assert prefixes["lm_head"] + "weight" in names
    assert prefixes["vision"] + "post_layernorm.weight" in names
    assert prefixes["projector"] + "linear_2.bias" in names
