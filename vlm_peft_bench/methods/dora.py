"""DoRA (weight-decomposed LoRA; peft's `LoraConfig(use_dora=True)`): LoRA's recipe and format, plus one magnitude
vector per adapted module. Everything else is LoRA's."""

from __future__ import annotations

from vlm_peft_bench.methods.lora import LoraFamily

INFO = {
    "name": "dora", "label": "DoRA", "colour": "#17becf", "format": "peft", "sections": ["lora"],
    "recognise": {"json": {"adapter_config.json": {"peft_type": "LORA", "use_dora": True}}},
}


class DoraFamily(LoraFamily):
    module = "dora"
    extra_config = {"use_dora": True}


FAMILY = DoraFamily()
