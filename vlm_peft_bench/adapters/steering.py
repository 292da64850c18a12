"""Steering vectors as interventions: a fixed vector per layer, derived from a model's states rather than trained.

Two kinds, each a plain `torch.nn.Module` that the ReFT hooks apply like any intervention (`adapters/reft.py`):

* `AdditionIntervention` is pyvene's class of that name with a constant source: `h + s` where `s` is the
  `source_representation` buffer. Our folders store `s` already multiplied by the strength they were saved with
  (`alpha`), so that pyvene, reading the folder with `IntervenableModel.load`, adds exactly what we add; a later
  `alpha=` override rescales by alpha / saved alpha (`scale`). Shift vectors and contrastive vectors use it.
* `IcvIntervention` is the in-context vector's edit as its authors' code applies it (Liu et al. 2023, "In-context
  Vectors", github.com/shengliu66/ICV, `utils/llm_layers.py`), on a layer's MLP output `x` with direction `v` and
  strength lambda: `normalize(normalize(x) + lambda * (1 + max(0, cos(x, -v))) * normalize(v)) * |x|`, i.e. a step
  toward `v` that keeps `x`'s norm (larger where `x` points away from `v`). pyvene has no such class: it cannot
  read these folders (their type string names this module).

Neither has trainable parameters: they count 0 trained parameters and `derived` ones (the vector's entries).
"""

from __future__ import annotations

import torch

PYVENE_MODULE = "pyvene.models.interventions"
OUR_MODULE = "vlm_peft_bench.adapters.steering"


class SteeringIntervention(torch.nn.Module):
    """A fixed vector (`source_representation`, one entry per hidden unit) and a strength factor `scale`."""

    type_module = OUR_MODULE

    def __init__(self, embed_dim: int, source_representation: torch.Tensor | None = None, scale: float = 1.0,
                 **_ignored) -> None:
        super().__init__()
        self.trainable = False
        self.is_source_constant = True
        self.keep_last_dim = False
        self.register_buffer("embed_dim", torch.tensor(embed_dim))
        self.register_buffer("interchange_dim", torch.tensor(embed_dim))
        vector = torch.zeros(embed_dim) if source_representation is None else source_representation.reshape(-1)
        if vector.numel() != embed_dim:
            raise ValueError(f"a steering vector of {vector.numel()} entries for hidden size {embed_dim}")
        self.register_buffer("source_representation", vector.clone())
        self.scale = float(scale)

    @property
    def derived_size(self) -> int:
        return self.source_representation.numel()


class AdditionIntervention(SteeringIntervention):
    """pyvene's AdditionIntervention with a constant source: h + scale * s."""

    type_module = PYVENE_MODULE

    def forward(self, base: torch.Tensor, source=None, subspaces=None) -> torch.Tensor:
        vector = self.source_representation.to(base.dtype)
        return base + (vector if self.scale == 1.0 else self.scale * vector)


class IcvIntervention(SteeringIntervention):
    """The in-context vector's norm-keeping step toward `v`, strength lambda = `scale` (the module docstring)."""

    def forward(self, base: torch.Tensor, source=None, subspaces=None) -> torch.Tensor:
        x = base.float()
        v = self.source_representation.float()
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
        similarity = torch.nn.functional.cosine_similarity(x, -v.expand_as(x), dim=-1).clamp(min=0).unsqueeze(-1)
        step = self.scale * (1.0 + similarity) * torch.nn.functional.normalize(v, dim=-1)
        edited = torch.nn.functional.normalize(torch.nn.functional.normalize(x, dim=-1) + step, dim=-1) * norm
        return edited.to(base.dtype)


STEERING: dict[str, type[SteeringIntervention]] = {cls.__name__: cls for cls in (AdditionIntervention,
                                                                                  IcvIntervention)}
