"""ReFT interventions (pyreft's types, LoReFT by default) on the residual stream of chosen decoder layers, at chosen
prompt positions; saved in pyreft's `ReftModel.save` format (written natively by `adapters/reft_files.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import LlavaConfig

from vlm_peft_bench.adapters.accounting import reft_intervention_size
from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.interventions import INTERVENTIONS
from vlm_peft_bench.adapters.positions import parse_positions
from vlm_peft_bench.adapters.reft import ReftAdapter, load_reft
from vlm_peft_bench.adapters.reft_files import META_FILE, ReftEntry, layer_component, save_reft_folder
from vlm_peft_bench.adapters.reft_folder import InterventionSpec, check_reft, load_intervention_state, read_reft_config
from vlm_peft_bench.methods.base import Attached, LoadOptions, MethodFamily, TrainingStage, untrained
from vlm_peft_bench.methods.recipe import Recipe, select_layers

INFO = {
    "name": "reft", "label": "ReFT", "colour": "#d62728", "format": "pyreft", "sections": ["reft"],
    "recognise": {"files": ["config.json"], "any_glob": ["intkey_*"], "absent": ["steering.json"]},
}


class ReftFamily(MethodFamily):
    module = "reft"

    def load(self, model: torch.nn.Module, folder: Path, options: LoadOptions) -> Attached:
        return Attached(model, reft=load_reft(model, folder, positions=options.positions))

    def check(self, model: torch.nn.Module, folder: Path) -> None:
        check_reft(model, folder)

    def describe(self, folder: Path) -> tuple[str, dict]:
        specs = read_reft_config(folder)
        meta_path = folder / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        settings = {"intervention_types": sorted({s.intervention_type for s in specs}), "interventions": len(specs),
                    "layers": sorted({s.layer for s in specs}), "components": sorted({s.where for s in specs}),
                    "rank": sorted({s.rank for s in specs}), "hidden_size": sorted({s.embed_dim for s in specs}),
                    "positions": meta.get("positions"), "share_weights": meta.get("share_weights"),
                    "intervene_on": meta.get("intervene_on", "prompt")}
        return "+".join(settings["intervention_types"]), settings

    def module_names(self, folder: Path) -> list[str]:
        read_reft_config(folder)  # checks the config
        return sorted({rep[1] for rep in json.loads((folder / "config.json").read_text())["representations"]})

    def count_files(self, folder: Path, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        """Counted on the modules the files describe (the files also hold buffers)."""
        total = 0
        for spec in read_reft_config(folder):
            state = load_intervention_state(folder / f"intkey_{spec.key}.bin")
            total += reft_intervention_size(spec.intervention_type, spec.embed_dim, spec.rank,
                                            add_bias="proj_layer.bias" in state)
        return total, untrained()

    def with_overrides(self, recipe: Recipe, overrides: dict) -> Recipe:
        changes = {k: overrides[k] for k in ("rank", "layers", "positions", "intervene_on")
                   if overrides.get(k) is not None}
        return recipe.replace_section("reft", **changes) if changes else recipe

    def prepare(self, recipe: Recipe, model: torch.nn.Module) -> list[TrainingStage]:
        section = recipe.section("reft")
        text = model.config.text_config
        layers = select_layers(section.layers, text.num_hidden_layers)
        groups = 1 if section.share_weights else len(parse_positions(section.positions))
        cls = INTERVENTIONS.get(section.intervention)
        if cls is None:
            raise AdapterError(f"{recipe.source}: unknown pyreft intervention type {section.intervention!r} "
                               f"(known: {', '.join(INTERVENTIONS)})")
        dtype = next(model.parameters()).dtype
        specs, modules = [], []
        for _ in range(groups):  # pyreft's order when weights are not shared: group by group, layers within
            for layer in layers:
                specs.append(InterventionSpec(f"layer{layer}", layer, "output", cls.__name__, int(section.rank),
                                              text.hidden_size))
                modules.append(cls(embed_dim=text.hidden_size, low_rank_dimension=int(section.rank), dtype=dtype,
                                   dropout=float(section.dropout), add_bias=True))
        device = next(model.parameters()).device
        modules = [m.to(device).train() for m in modules]
        model.requires_grad_(False)
        # Registered on the model so that DDP (several processes) sees and synchronises their gradients.
        model.add_module("reft_interventions", torch.nn.ModuleList(modules))
        adapter = ReftAdapter(model, specs, modules, section.positions, section.share_weights,
                              intervene_on=section.intervene_on).attach()
        params = [p for m in modules for p in m.parameters()]

        def save(folder: Path) -> None:
            entries = [ReftEntry(s.layer, layer_component(s.layer), s.rank, m) for s, m in zip(specs, modules)]
            save_reft_folder(folder, entries, section.positions, section.share_weights, section.intervene_on)

        def context(mask: torch.Tensor, lengths: list[int]):
            return adapter.intervene(mask, lengths, first_forward_only=False)

        # No weight decay on interventions: AdamW's decay zeroes LoReFT's orthogonal rotation.
        return [TrainingStage(model, [{"params": params, "weight_decay": 0.0}], save, context, adapter)]

    def count_recipe(self, recipe: Recipe, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        section = recipe.section("reft")
        text = config.text_config
        layers = select_layers(section.layers, text.num_hidden_layers)
        per_layer = 1 if section.share_weights else len(parse_positions(section.positions))
        size = reft_intervention_size(section.intervention, text.hidden_size, int(section.rank))
        return size * len(layers) * per_layer, untrained()


FAMILY = ReftFamily()
