"""Any other peft adapter (IA3, LoHa, LoKr, OFT, ...): loaded by peft itself into the model, named on the
leaderboard by its `peft_type`. No recipe: these come from elsewhere and are only evaluated."""

from __future__ import annotations

from vlm_peft_bench.methods._peft import PeftFamily

INFO = {
    "name": "peft", "label": "other peft", "colour": "#8c564b", "format": "peft", "fallback": True,
    "name_field": ["adapter_config.json", "peft_type"],
    "recognise": {"files": ["adapter_config.json"]},
}


class OtherPeftFamily(PeftFamily):
    module = "peft_other"


FAMILY = OtherPeftFamily()
