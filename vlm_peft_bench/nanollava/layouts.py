"""nanoLLaVA's module and tensor names in every layout they have been saved under, and renaming to the installed one.

The same weights have carried four sets of names:

* the original remote-code nanoLLaVA (`llava-qwen2`): `model.layers.N`, `lm_head`,
  `model.vision_tower.vision_tower.vision_model.*`, `model.mm_projector.0/2`;
* transformers 4.45's Llava: `language_model.model.layers.N`, `language_model.lm_head`, `vision_tower.vision_model.*`,
  `multi_modal_projector.linear_1/2`;
* transformers 4.52-4.57: `model.language_model.layers.N`, `lm_head`, `model.vision_tower.vision_model.*`,
  `model.multi_modal_projector.*`;
* transformers 5: as 4.52, but the SigLIP transformer sits directly at `model.vision_tower.*`.

A layout is data: where the text decoder, LM head, vision transformer and projector live, and what the projector's two
linear layers are called. The installed model's own layout is read from the model (which module owns what, never
from a version number); `to_native` renames names written under any layout to it. Everything in the project that
depends on transformers' Llava module tree asks this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from vlm_peft_bench.errors import VlmPeftBenchError

COMPONENTS = ("lm_head", "projector", "vision", "text")
# What may follow a component's prefix: the decoder's and the SigLIP transformer's children (`head` only exists in
# the original checkpoint, whose vision tower kept SigLIP's pooling head).
CHILDREN = {"text": {"embed_tokens", "layers", "norm", "rotary_emb"},
            "vision": {"embeddings", "encoder", "post_layernorm", "head"}}
CANONICAL_PROJECTOR = ("linear_1", "linear_2")


class LayoutError(VlmPeftBenchError, ValueError):
    """Names that belong to no known nanoLLaVA layout (another base model), or that mix layouts."""


@dataclass(frozen=True)
class Layout:
    key: str  # short id, as `vlm-peft-bench inspect` reports it
    name: str
    text: str  # the Qwen2 decoder: embed_tokens, layers, norm
    lm_head: str
    vision: str  # the SigLIP transformer: embeddings, encoder, post_layernorm
    projector: str
    projector_layers: tuple[str, str] = CANONICAL_PROJECTOR  # its first and second linear layer

    def prefix(self, component: str) -> str:
        return getattr(self, component)

    def split(self, name: str) -> tuple[str, str] | None:
        """(component, rest of the name in canonical form), or None when `name` is not under this layout."""
        for component in COMPONENTS:
            prefix = self.prefix(component)
            if name == prefix:
                if self._whole_component_named(component):
                    return component, ""
                continue
            if not name.startswith(prefix + "."):
                continue
            rest = name[len(prefix) + 1:]
            first, dot, tail = rest.partition(".")
            if component == "projector":
                if first in self.projector_layers:
                    return component, CANONICAL_PROJECTOR[self.projector_layers.index(first)] + dot + tail
            elif component == "lm_head" or first in CHILDREN[component]:
                return component, rest
        return None

    def join(self, component: str, rest: str) -> str:
        if component == "projector" and rest:
            first, dot, tail = rest.partition(".")
            rest = self.projector_layers[CANONICAL_PROJECTOR.index(first)] + dot + tail
        prefix = self.prefix(component)
        return f"{prefix}.{rest}" if prefix and rest else prefix or rest

    def _whole_component_named(self, component: str) -> bool:
        """A bare component prefix names that component only if it does not also contain the others (the original
        layout's `model` holds the decoder, the vision tower and the projector)."""
        prefix = self.prefix(component)
        return all(not self.prefix(c).startswith(prefix + ".") for c in COMPONENTS if c != component)


ORIGINAL = Layout("remote-code", "original nanoLLaVA (llava-qwen2)", "model", "lm_head",
                  "model.vision_tower.vision_tower.vision_model", "model.mm_projector", ("0", "2"))
TRANSFORMERS_4_45 = Layout("transformers-4.45", "transformers 4.45 Llava", "language_model.model",
                           "language_model.lm_head", "vision_tower.vision_model", "multi_modal_projector")
TRANSFORMERS_4_52 = Layout("transformers-4.52", "transformers 4.52-4.57 Llava", "model.language_model", "lm_head",
                           "model.vision_tower.vision_model", "model.multi_modal_projector")
TRANSFORMERS_5 = Layout("transformers-5", "transformers 5 Llava", "model.language_model", "lm_head",
                        "model.vision_tower", "model.multi_modal_projector")
LAYOUTS = (TRANSFORMERS_4_45, TRANSFORMERS_4_52, TRANSFORMERS_5, ORIGINAL)


def _module_name(model: torch.nn.Module, wanted: torch.nn.Module) -> str:
    for name, module in model.named_modules():
        if module is wanted:
            return name
    raise LookupError("module not found in model")


def native_modules(model: torch.nn.Module) -> dict[str, str]:
    """Module names of the text decoder, LM head, vision transformer and projector in the installed model, found by
    what each module holds (a decoder has `embed_tokens` and `layers`, ...), whatever transformers calls them."""
    found: dict[str, str] = {}
    for name, module in model.named_modules():
        if hasattr(module, "embed_tokens") and hasattr(module, "layers") and "text" not in found:
            found["text"] = name
        elif all(hasattr(module, a) for a in ("embeddings", "encoder", "post_layernorm")) and "vision" not in found:
            found["vision"] = name
        elif hasattr(module, "linear_1") and hasattr(module, "linear_2") and "projector" not in found:
            found["projector"] = name
    found["lm_head"] = _module_name(model, model.get_output_embeddings())
    missing = {"text", "vision", "projector"} - set(found)
    if missing:
        raise LookupError(f"model has no {sorted(missing)} module: not a Llava model?")
    return found


def native_prefixes(model: torch.nn.Module) -> dict[str, str]:
    """As `native_modules`, each ending in a dot (empty for the root), ready to be put in front of a name."""
    return {k: (v + "." if v else "") for k, v in native_modules(model).items()}


def native_layout(model: torch.nn.Module) -> Layout:
    """The installed model's layout: the known one its module names equal, or one made from them."""
    found = native_modules(model)
    for layout in LAYOUTS:
        if all(layout.prefix(c) == found[c] for c in COMPONENTS) and layout.projector_layers == CANONICAL_PROJECTOR:
            return layout
    return Layout("installed", "installed transformers Llava", found["text"], found["lm_head"], found["vision"],
                  found["projector"])


def native_module(model: torch.nn.Module, component: str) -> torch.nn.Module:
    """The installed model's text decoder, LM head, vision transformer or projector."""
    return model.get_submodule(native_modules(model)[component])


def detect_layout(names: Iterable[str], native: Layout | None = None) -> Layout:
    """The layout every one of `names` belongs to (`native` first, when given and it fits). Raises `LayoutError`
    naming the first name that fits no layout, and the layouts tried."""
    names = list(names)
    tried = ([native] if native else []) + [layout for layout in LAYOUTS if layout != native]
    for layout in tried:
        if all(layout.split(n) for n in names):
            return layout
    listing = "; ".join(layout.name for layout in tried)
    for name in names:
        if not any(layout.split(name) for layout in tried):
            raise LayoutError(f"{name!r} is no module of nanoLLaVA in any known layout (tried: {listing}): "
                              "made for another base model?")
    raise LayoutError(f"the names mix several nanoLLaVA layouts (tried: {listing}), e.g. {names[:2]}")


def rename(name: str, source: Layout, target: Layout) -> str:
    split = source.split(name)
    if split is None:
        raise LayoutError(f"{name!r} is not a name of the {source.name} layout")
    return target.join(*split)


def to_native(names: Iterable[str], model: torch.nn.Module) -> tuple[Layout, dict[str, str]]:
    """(the layout `names` were written under, {name: the installed model's name for it})."""
    names = list(names)
    native = native_layout(model)
    source = detect_layout(names, native)
    return source, {n: (n if source == native else rename(n, source, native)) for n in names}
