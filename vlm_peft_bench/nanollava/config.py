"""nanoLLaVA's architecture expressed as a native transformers `LlavaConfig` (no remote code).

Facts (qnguyen3/nanoLLaVA): a Qwen2 language model (Qwen1.5-0.5B fine-tune), SigLIP so400m-patch14-384 with
its last encoder layer removed and no pooling head (features taken before `post_layernorm`), and an
`mlp2x_gelu` projector. See `../shared/design/nanollava.md` in the project notes.
"""

from __future__ import annotations

from transformers import LlavaConfig, Qwen2Config, SiglipVisionConfig

IMAGE_TOKEN = "<image>"
# nanoLLaVA splices image features at the sentinel id -200; the native Llava model needs a real token id.
# Ids >= 151646 are unused rows of Qwen2's 151936-row embedding, so the first one carries the image token.
NANOLLAVA_IMAGE_TOKEN_ID = 151646
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)

NANOLLAVA_TEXT = dict(
    vocab_size=151936, hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
    num_attention_heads=16, num_key_value_heads=16, hidden_act="silu", max_position_embeddings=32768,
    rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False,
    bos_token_id=151645, eos_token_id=151645,
)
NANOLLAVA_VISION = dict(
    hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
    image_size=384, patch_size=14, num_channels=3, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
    vision_use_head=False,
)

# nanollava-tiny (vlm_peft_bench/assets/nanollava-tiny): the same module tree at toy size; its files are built by
# `python -m vlm_peft_bench_build.tiny`.
TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", IMAGE_TOKEN]
TINY_VOCAB = 1024
TINY_TEXT = dict(
    vocab_size=TINY_VOCAB, hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=4, hidden_act="silu", max_position_embeddings=2048, rope_theta=1_000_000.0,
    rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False,
    bos_token_id=TINY_SPECIAL_TOKENS.index("<|im_end|>"), eos_token_id=TINY_SPECIAL_TOKENS.index("<|im_end|>"),
)
TINY_VISION = dict(
    hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4, image_size=64,
    patch_size=8, num_channels=3, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, vision_use_head=False,
)


def llava_config(text: dict, vision: dict, image_token_index: int) -> LlavaConfig:
    """A Llava config in nanoLLaVA's layout: last vision layer's output, all patches, GELU projector."""
    vision_config = SiglipVisionConfig(**vision)
    n_image_tokens = (vision_config.image_size // vision_config.patch_size) ** 2
    return LlavaConfig(
        vision_config=vision_config.to_dict(),
        text_config=Qwen2Config(**text).to_dict(),
        image_token_index=image_token_index,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_seq_length=n_image_tokens,
        tie_word_embeddings=text.get("tie_word_embeddings", False),
    )


def nanollava_config() -> LlavaConfig:
    """The full-size nanoLLaVA architecture (about 1.05 B parameters)."""
    return llava_config(NANOLLAVA_TEXT, NANOLLAVA_VISION, NANOLLAVA_IMAGE_TOKEN_ID)


def tiny_config() -> LlavaConfig:
    """The tiny model's architecture (what `vlm_peft_bench_build.tiny` initialises and saves)."""
    return llava_config(TINY_TEXT, TINY_VISION, TINY_SPECIAL_TOKENS.index(IMAGE_TOKEN))


def num_image_tokens(config: LlavaConfig) -> int:
    vc = config.vision_config
    return (vc.image_size // vc.patch_size) ** 2
