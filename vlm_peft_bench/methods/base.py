"""What a method family provides (`MethodFamily`), and the two things it hands out: an adapter attached to a model
for running (`Attached`) and a training stage (`TrainingStage`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LlavaConfig

from vlm_peft_bench.adapters.prefix import PrefixAdapter
from vlm_peft_bench.adapters.reft import ReftAdapter
from vlm_peft_bench.methods.recipe import Recipe
from vlm_peft_bench.methods.table import MethodInfo, method_table

COMPONENTS = ("vision_tower", "projector", "language_model")


@dataclass
class Attached:
    """An adapter on a model: the model to run (with adapter layers, merged or replaced weights) and, for the
    adapters that act around the model rather than inside it, the ReFT hooks or the prefix to run it through."""

    model: torch.nn.Module
    reft: ReftAdapter | None = None
    prefix: PrefixAdapter | None = None


@dataclass
class LoadOptions:
    merge_lora: bool = False  # merge LoRA-style weights into the base (faster; same outputs up to rounding)
    positions: str | None = None  # ReFT: override the saved intervention positions
    strength: float | None = None  # steering vectors: override the saved alpha (or an ICV's lambda)


def no_context(_mask: torch.Tensor, _lengths: list[int]) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


@dataclass
class TrainingStage:
    """One stage of training: the model to call, AdamW's parameter groups, a context around each forward (ReFT's
    positions), how to save what it trained in the method's own format, and what evaluation would run (`runs_as`,
    default: the model with the stage's ReFT hooks), for validating through the same runner."""

    model: torch.nn.Module
    param_groups: list[dict]
    save: Callable[[Path], None]
    forward_context: Callable[[torch.Tensor, list[int]], contextlib.AbstractContextManager] = no_context
    reft: ReftAdapter | None = None
    runs_as: Attached | None = None

    def attached(self) -> Attached:
        return self.runs_as or Attached(self.model, reft=self.reft)


class MethodFamily:
    """One method family. Subclasses set `module` (their module's name in this package, whose `INFO` row they
    serve) and implement what applies to them; a family without a recipe does not train."""

    module: str = ""

    @property
    def info(self) -> MethodInfo:
        return next(i for i in method_table().values() if i.module == self.module)

    @property
    def name(self) -> str:
        return self.info.name

    # -- saved folders

    def load(self, model: torch.nn.Module, folder: Path, options: LoadOptions) -> Attached:
        raise NotImplementedError

    def check(self, model: torch.nn.Module, folder: Path) -> None:
        """The loader's checks without loading (AdapterError when `load` would refuse); `model` may be on the meta
        device."""
        raise NotImplementedError

    def describe(self, folder: Path) -> tuple[str, dict]:
        """(what the files hold in a few words, their settings) for `inspect`."""
        raise NotImplementedError

    def module_names(self, folder: Path) -> list[str]:
        """The base-model module names the files refer to (sorted, without repeats)."""
        raise NotImplementedError

    def named_base(self, folder: Path) -> str | None:
        """The base model the files name, if any."""
        return None

    def count_files(self, folder: Path, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        """(adapter parameters, base parameters trained per component) from the saved files."""
        raise NotImplementedError

    def count_derived(self, folder: Path) -> int:
        """Parameters computed from the model's states rather than trained (steering vectors' entries); 0 here."""
        return 0

    # -- recipes

    def with_overrides(self, recipe: Recipe, overrides: dict) -> Recipe:
        """The recipe with command-line overrides (rank, layers, positions, ...) applied; unknown ones ignored."""
        return recipe

    def prepare(self, recipe: Recipe, model: torch.nn.Module) -> list[TrainingStage | Callable[[], TrainingStage]]:
        """The training stages, in order; a later stage may be a function that builds it when it starts."""
        raise NotImplementedError(f"method {self.name} has no training recipe")

    def count_recipe(self, recipe: Recipe, config: LlavaConfig) -> tuple[int, dict[str, int]]:
        """(adapter parameters, base parameters made trainable per component) for the recipe on this base."""
        raise NotImplementedError


def untrained() -> dict[str, int]:
    return dict.fromkeys(COMPONENTS, 0)
