"""nanoLLaVA's inputs: square-padded, resized, normalized images and a ChatML prompt with image tokens.

Image preprocessing follows nanoLLaVA (Bunny's `expand2square` + SigLIP's processor): pad the image to a
square with the mean colour (127, 127, 127), resize to the vision tower's size with bicubic resampling,
rescale by 1/255, normalize with mean = std = 0.5. The resize/rescale/normalize step is written out here with PIL
and numpy, exactly as transformers 4.x's `SiglipImageProcessor` computes it (PIL's bicubic resize of the 8-bit
image, then float arithmetic), which nanoLLaVA was trained with: transformers 5's `SiglipImageProcessor` resizes
otherwise and moves some pixels by one intensity level (2/255 after normalisation), enough to flip a greedy
answer now and then. Written out, the pixels are identical on every transformers version.

The prompt is ChatML, written explicitly rather than through a tokenizer's chat template so that what the
model sees never depends on files shipped with a checkpoint::

    [<|im_start|>system\n{system}<|im_end|>\n]<|im_start|>user\n<image>\n{text}<|im_end|>\n<|im_start|>assistant\n

The system turn is present only when a system prompt is given (default: none). The single `<image>` is
expanded to one token per image patch, which is what the native Llava model expects. The user's text is data: a
`<|im_end|>` or `<image>` written in a question is encoded as those characters, never as a control token.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from transformers import BatchEncoding, LlavaConfig, PreTrainedTokenizerBase

from vlm_peft_bench.nanollava.config import IMAGE_MEAN, IMAGE_STD, IMAGE_TOKEN, num_image_tokens

PAD_COLOUR = tuple(int(m * 255) for m in IMAGE_MEAN)  # (127, 127, 127), as nanoLLaVA computes it


def expand_to_square(image: Image.Image, background: tuple[int, int, int] = PAD_COLOUR) -> Image.Image:
    """Pad the shorter side symmetrically (the image stays centred), as LLaVA's `expand2square`."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def image_to_array(image: Image.Image, size: int) -> np.ndarray:
    """One image as SigLIP's input, [3, size, size] float32 (see the module docstring for why it is written out)."""
    square = expand_to_square(image.convert("RGB")).resize((size, size), resample=Image.BICUBIC)
    pixels = (np.asarray(square, dtype=np.uint8) * (1 / 255)).astype(np.float32)
    pixels = (pixels - np.array(IMAGE_MEAN, dtype=np.float32)) / np.array(IMAGE_STD, dtype=np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


ASSISTANT_TURN = "<|im_end|>\n<|im_start|>assistant\n"  # what follows the user's text


def chatml_prompt(text: str, system_prompt: str | None = None, with_image: bool = True) -> str:
    """The ChatML prompt for one user turn, starting with the image token when there is an image."""
    system = f"<|im_start|>system\n{system_prompt}<|im_end|>\n" if system_prompt else ""
    image = f"{IMAGE_TOKEN}\n" if with_image else ""
    return f"{system}<|im_start|>user\n{image}{text}{ASSISTANT_TURN}"


class NanoLlavaProcessor:
    """Turns (text, image) pairs into left-padded model inputs for nanoLLaVA-architecture models."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: LlavaConfig, system_prompt: str | None = None):
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.system_prompt = system_prompt
        self.image_token_id = config.image_token_index
        self.n_image_tokens = num_image_tokens(config)
        self.image_size = config.vision_config.image_size
        token = tokenizer.convert_ids_to_tokens(self.image_token_id)
        if token != IMAGE_TOKEN:
            raise ValueError(
                f"tokenizer maps the image token id {self.image_token_id} to {token!r}, not {IMAGE_TOKEN!r}: "
                "the tokenizer does not belong to this model"
            )

    def prompt(self, text: str, with_image: bool = True) -> str:
        return chatml_prompt(text, self.system_prompt, with_image)

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """[N, 3, size, size] float32: squared, resized, rescaled and normalised as nanoLLaVA's processor does."""
        return torch.from_numpy(np.stack([image_to_array(img, self.image_size) for img in images]))

    def _ids(self, prompt: str) -> list[int]:
        """Token ids of a prompt, with its image token (if any) expanded to one id per image patch. In a prompt
        made by `prompt`, special tokens are read only in the markup around the user's text, not in the text."""
        for with_image in (True, False):
            markup = self.prompt("", with_image)[:-len(ASSISTANT_TURN)]  # everything before the user's text
            if prompt.startswith(markup) and prompt.endswith(ASSISTANT_TURN) and \
                    len(prompt) >= len(markup) + len(ASSISTANT_TURN):
                # the text's segment starts after the markup's last special token, as when the whole prompt is
                # tokenized, so that an ordinary text gets exactly the same ids
                last = IMAGE_TOKEN if with_image else "<|im_start|>"
                head = markup[:markup.rindex(last) + len(last)]
                text = prompt[len(head):len(prompt) - len(ASSISTANT_TURN)]
                ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
                return self._markup_ids(head) + ids + self._markup_ids(ASSISTANT_TURN)
        return self._markup_ids(prompt)

    def _markup_ids(self, prompt: str) -> list[int]:
        """Token ids with special tokens read as such and the image token expanded."""
        before, sep, after = prompt.partition(IMAGE_TOKEN)
        if not sep:
            return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if IMAGE_TOKEN in after:
            raise ValueError("nanoLLaVA takes at most one image per prompt")
        ids = self.tokenizer(before, add_special_tokens=False)["input_ids"]
        ids += [self.image_token_id] * self.n_image_tokens
        ids += self.tokenizer(after, add_special_tokens=False)["input_ids"]
        return ids

    def encode(self, prompts: Sequence[str], continuations: Sequence[str] | None = None) -> list[list[int]]:
        out = []
        for i, prompt in enumerate(prompts):
            ids = self._ids(prompt)
            if continuations is not None:
                ids += self.tokenizer(continuations[i], add_special_tokens=False)["input_ids"]
            out.append(ids)
        return out

    def pad_left(self, sequences: Sequence[list[int]]) -> BatchEncoding:
        """Left-pad token id lists into `input_ids` and `attention_mask` tensors."""
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            if seq:
                input_ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
                attention_mask[row, width - len(seq):] = 1
        return BatchEncoding({"input_ids": input_ids, "attention_mask": attention_mask})

    def __call__(self, texts: Sequence[str], images: Sequence[Image.Image | None]) -> BatchEncoding:
        """Model inputs for a batch of user turns (texts without chat markup), each with one image or None."""
        if len(texts) != len(images):
            raise ValueError(f"{len(texts)} texts but {len(images)} images: give one image (or None) per text")
        batch = self.pad_left(self.encode([self.prompt(t, img is not None) for t, img in zip(texts, images)]))
        present = [img for img in images if img is not None]
        if present:
            batch["pixel_values"] = self.pixel_values(present)
        return batch
