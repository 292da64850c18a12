"""`nanollava-tiny`: nanoLLaVA's exact architecture at toy size, embedded in the package for offline use.

Same module tree as nanoLLaVA (Qwen2 decoder with q/k/v biases and an untied LM head, SigLIP encoder
without pooling head whose last layer's output feeds an mlp2x_gelu projector), same preprocessing and the
same ChatML prompt. Only the sizes differ. Its tokenizer is a byte-level BPE (any text encodes, nothing is
unknown) trained on the cvbench_mini texts, with Qwen's ChatML special tokens and `<image>`.

Rebuild the committed files with::

    python -m vlm_peft_bench_build.tiny --out vlm_peft_bench/assets/nanollava-tiny

The result is deterministic for a given seed and library versions (weights are seeded; the tokenizer
trainer is deterministic on a fixed corpus).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlavaForConditionalGeneration, PreTrainedTokenizerFast

from vlm_peft_bench.nanollava.config import IMAGE_TOKEN, TINY_SPECIAL_TOKENS, TINY_VOCAB, tiny_config
from vlm_peft_bench.nanollava.loading import TINY_DIR
from vlm_peft_bench.scoring.cvbench import POST_PROMPT
from vlm_peft_bench_build.synthetic.cvbench_scenes import TOKENIZER_SPLIT_SIZES, generate_split
from vlm_peft_bench_build.synthetic.pretrain_scenes import corpus_sample


def tokenizer_corpus() -> list[str]:
    """Texts the tiny tokenizer is trained on: cvbench_mini prompts and choices, pre-training questions and
    answers, and ChatML framing."""
    texts = ["user\n", "assistant\n", "system\n", POST_PROMPT.strip()]
    texts += corpus_sample()
    for split in ("train", "test"):
        for item in generate_split(split, TOKENIZER_SPLIT_SIZES[split]):
            texts.append(item["prompt"])
            texts.extend(f"{item['answer']} {c}" for c in item["choices"])
    return texts


def train_tokenizer(corpus: list[str], vocab_size: int = TINY_VOCAB) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=TINY_SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>", IMAGE_TOKEN], model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )


def build_tiny(out: Path, seed: int = 0) -> Path:
    """Write the tiny model folder (config, safetensors weights, tokenizer) to `out`."""
    tokenizer = train_tokenizer(tokenizer_corpus())
    config = tiny_config()
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=TINY_DIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"wrote {build_tiny(args.out, args.seed)}")


if __name__ == "__main__":
    main()
