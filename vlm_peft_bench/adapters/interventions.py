"""pyreft 0.1.0's interventions, reimplemented without pyreft or pyvene.

Every class pyreft ships (LoReFT, NoReFT, ConsReFT, LobiReFT, DiReFT, NodiReFT and the `LowRankRotateLayer` they
rotate with) as a plain `torch.nn.Module` with pyreft's constructor arguments (`embed_dim`, `low_rank_dimension`,
`dtype`, `dropout`, `act_fn`, `add_bias`), pyreft's forward arithmetic, pyreft's `state_dict()` (keys, shapes, dtypes,
pyvene's `embed_dim` / `interchange_dim` buffers included; LoReFT's compact `weight`, `bias`, `rotate_layer`) and
pyreft's initialisation: the same random draws in the same order, so a seed gives bit-identical modules. The
rotation keeps torch's orthogonal parametrisation, as pyreft's does, so training behaves the same.

The attributes pyvene's base classes set (`trainable`, `is_source_constant`, `keep_last_dim`, ...) are kept, for
code that reads them; the class hierarchy is not (these are not `pyvene.Intervention` instances).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from transformers.activations import ACT2FN

PYREFT_MODULE = "pyreft.interventions"  # where pyreft's classes live: the type strings its config.json records


class LowRankRotateLayer(torch.nn.Module):
    """A linear transformation with orthogonal initialization (n > m)."""

    def __init__(self, n, m, init_orth=True):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(n, m), requires_grad=True)
        if init_orth:
            torch.nn.init.orthogonal_(self.weight)

    def forward(self, x):
        return torch.matmul(x.to(self.weight.dtype), self.weight)


class Intervention(torch.nn.Module):
    """What pyvene's `SourcelessIntervention, TrainableIntervention, DistributedRepresentationIntervention` bases
    give pyreft's classes: their flags and the `embed_dim` / `interchange_dim` buffers (part of the state dict)."""

    def __init__(self, **kwargs):
        super().__init__()
        self.is_repr_distributed = True
        self.trainable = True
        self.is_source_constant = True  # sourceless
        self.keep_last_dim = kwargs.get("keep_last_dim", False)
        self.use_fast = kwargs.get("use_fast", False)
        partition = kwargs.get("subspace_partition")
        if partition is not None:
            partition = [list(range(s[0], s[1])) if len(s) == 2 and isinstance(s[0], int) else s for s in partition]
        self.subspace_partition = partition
        if kwargs.get("embed_dim") is not None:
            self.register_buffer("embed_dim", torch.tensor(kwargs["embed_dim"]))
            self.register_buffer("interchange_dim", torch.tensor(kwargs["embed_dim"]))
        else:
            self.embed_dim = None
            self.interchange_dim = None
        if kwargs.get("source_representation") is not None:
            self.register_buffer("source_representation", kwargs["source_representation"])
        else:
            self.source_representation = None

    def set_interchange_dim(self, interchange_dim):
        self.interchange_dim = interchange_dim if torch.is_tensor(interchange_dim) else torch.tensor(interchange_dim)

    def tie_weight(self, linked_intervention):
        pass


def _dtype(kwargs: dict) -> torch.dtype:
    return kwargs["dtype"] if "dtype" in kwargs else torch.bfloat16  # pyreft's default


def _act_fn(kwargs: dict):
    return ACT2FN["linear"] if kwargs.get("act_fn") is None else ACT2FN[kwargs["act_fn"]]


def _dropout(kwargs: dict) -> torch.nn.Dropout:
    return torch.nn.Dropout(kwargs["dropout"] if "dropout" in kwargs else 0.0)


def _rotation(embed_dim: int, rank: int) -> torch.nn.Module:
    return torch.nn.utils.parametrizations.orthogonal(LowRankRotateLayer(embed_dim, rank, init_orth=True))


def _linear(kwargs: dict, embed_dim: int, bias: bool = True) -> torch.nn.Linear:
    return torch.nn.Linear(embed_dim, kwargs["low_rank_dimension"], bias=bias).to(_dtype(kwargs))


def _rotation_and_linear_source(module: Intervention, kwargs: dict) -> None:
    """LoReFT's and DiReFT's parts, created (and drawn from the random generator) in pyreft's order."""
    module.rotate_layer = _rotation(module.embed_dim, kwargs["low_rank_dimension"])
    module.learned_source = _linear(kwargs, module.embed_dim)
    module.dropout = _dropout(kwargs)
    module.act_fn = _act_fn(kwargs)


def _projection_and_linear_source(module: Intervention, kwargs: dict) -> None:
    """NoReFT's and NodiReFT's parts, in pyreft's order."""
    module.proj_layer = _linear(kwargs, module.embed_dim, bias=kwargs["add_bias"])
    module.learned_source = _linear(kwargs, module.embed_dim)
    module.dropout = _dropout(kwargs)
    module.act_fn = _act_fn(kwargs)


class LoreftIntervention(Intervention):
    """LoReFT(h) = h + R^T(Wh + b - Rh)"""

    def __init__(self, **kwargs):
        super().__init__(**kwargs, keep_last_dim=True)
        _rotation_and_linear_source(self, kwargs)

    def forward(self, base, source=None, subspaces=None):
        rotated_base = self.rotate_layer(base)
        output = base + torch.matmul(
            (self.act_fn(self.learned_source(base)) - rotated_base), self.rotate_layer.weight.T)
        return self.dropout(output.to(base.dtype))

    def state_dict(self, *args, **kwargs):
        """pyreft's compact form: the learned source's `weight` and `bias`, and the rotation's value."""
        state_dict = OrderedDict()
        for k, v in self.learned_source.state_dict().items():
            state_dict[k] = v
        state_dict["rotate_layer"] = self.rotate_layer.weight.data
        return state_dict

    def load_state_dict(self, state_dict, *args, **kwargs):
        """As pyreft: a new parametrised rotation whose base holds the saved columns."""
        self.learned_source.load_state_dict(state_dict, strict=False)
        overload_w = state_dict["rotate_layer"].to(self.learned_source.weight.device)
        overload_w_width = overload_w.shape[-1]
        rotate_layer = LowRankRotateLayer(self.embed_dim, overload_w_width, init_orth=True).to(
            self.learned_source.weight.device)
        self.rotate_layer = torch.nn.utils.parametrizations.orthogonal(rotate_layer)
        self.rotate_layer.parametrizations.weight[0].base[:, :overload_w_width] = overload_w
        if not torch.allclose(self.rotate_layer.weight.data, overload_w.data):
            raise ValueError("the saved rotation is not orthonormal")


class NoreftIntervention(Intervention):
    """NoReFT(h) = h + W2^T(W1h + b - W2h)"""

    def __init__(self, **kwargs):
        super().__init__(**kwargs, keep_last_dim=True)
        _projection_and_linear_source(self, kwargs)

    def forward(self, base, source=None, subspaces=None):
        proj_base = self.proj_layer(base)
        output = base + torch.matmul((self.act_fn(self.learned_source(base)) - proj_base), self.proj_layer.weight)
        return self.dropout(output.to(base.dtype))


class ConsreftIntervention(Intervention):
    """ConsReFT(h) = h + R^T(b - Rh)"""

    def __init__(self, **kwargs):
        super().__init__(**kwargs, keep_last_dim=True)
        self.rotate_layer = _rotation(self.embed_dim, kwargs["low_rank_dimension"])
        self.learned_source = torch.nn.Parameter(torch.rand(kwargs["low_rank_dimension"]), requires_grad=True)

    def forward(self, base, source=None, subspaces=None):
        rotated_base = self.rotate_layer(base)
        output = base + torch.matmul((self.learned_source - rotated_base), self.rotate_layer.weight.T)
        return output.to(base.dtype)


class LobireftIntervention(Intervention):
    """LobiReFT(h) = h + R^T(b)"""

    def __init__(self, **kwargs):
        super().__init__(**kwargs, keep_last_dim=True)
        self.rotate_layer = _rotation(self.embed_dim, kwargs["low_rank_dimension"])
        self.learned_source = torch.nn.Parameter(torch.rand(kwargs["low_rank_dimension"]), requires_grad=True)
        self.dropout = _dropout(kwargs)

    def forward(self, base, source=None, subspaces=None):
        output = base + torch.matmul(self.learned_source, self.rotate_layer.weight.T)
        return self.dropout(output.to(base.dtype))


class DireftIntervention(Intervention):
    """DiReFT(h) = h + R^T(Wh + b)"""

    def __init__(self, **kwargs):
        super().__init__(**kwargs, keep_last_dim=True)
        _rotation_and_linear_source(self, kwargs)

    def forward(self, base, source=None, subspaces=None):
        cast_base = base.to(self.learned_source.weight.dtype)
        output = base + torch.matmul(
            (self.act_fn(self.learned_source(cast_base))).to(self.rotate_layer.weight.dtype),
            self.rotate_layer.weight.T)
        return self.dropout(output.to(base.dtype))


class NodireftIntervention(Intervention):
    """NodiReFT(h) = h + W2^T(W1h + b)"""

    def __init__(self, **kwargs):
        super().__init__(**kwargs, keep_last_dim=True)
        _projection_and_linear_source(self, kwargs)

    def forward(self, base, source=None, subspaces=None):
        output = base + torch.matmul(self.act_fn(self.learned_source(base)), self.proj_layer.weight)
        return self.dropout(output.to(base.dtype))


INTERVENTIONS: dict[str, type[Intervention]] = {cls.__name__: cls for cls in (
    LoreftIntervention, NoreftIntervention, ConsreftIntervention, LobireftIntervention, DireftIntervention,
    NodireftIntervention)}


def type_string(cls: type) -> str:
    """How pyvene's config.json names an intervention class: `str(type(module))` of the library class ours stands
    for (pyreft's, or for steering vectors the module their `type_module` names)."""
    return f"<class '{getattr(cls, 'type_module', PYREFT_MODULE)}.{cls.__name__}'>"


def evaluation_function(module: torch.nn.Module):
    """For a frozen LoReFT in evaluation (no parametrisation left, no gradients: `reft.frozen`), its forward as one
    function of plain tensors: the same torch operations in the same order as `LoreftIntervention.forward`, so the
    same numbers, without the nested module calls that made up most of an intervention's time on the CPU (dropout
    is the identity in evaluation). None for anything else (those run their module)."""
    if type(module) is not LoreftIntervention or module.training or any(p.requires_grad for p in module.parameters()):
        return None
    if torch.nn.utils.parametrize.is_parametrized(module.rotate_layer):
        return None
    if type(module.act_fn) is not type(ACT2FN["linear"]):  # the identity, pyreft's default
        return None
    rotation = module.rotate_layer.weight
    weight, bias = module.learned_source.weight, module.learned_source.bias
    rotation_t = rotation.T  # a view, as pyreft multiplies by (a contiguous copy can round otherwise)

    def forward(base: torch.Tensor) -> torch.Tensor:
        if base.dtype != rotation.dtype:  # the module's conversions, which are no-ops in the hook's float32
            return module(base)
        rotated_base = torch.matmul(base, rotation)
        source = torch.nn.functional.linear(base, weight, bias)
        return base + torch.matmul(source - rotated_base, rotation_t)
    return forward
