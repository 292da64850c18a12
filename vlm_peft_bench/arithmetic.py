"""Adapter arithmetic (task vectors): `vlm-peft-bench combine A B --weights 0.5,0.5`.

LoRA adapters are combined by peft's own `add_weighted_adapter` with `combination_type="cat"`: the combined
adapter's A stacks each parent's A times its weight and LoRA scaling, its B stacks the parents' B, and its scaling
is 1, so its weight update is exactly the weighted sum of the parents' updates (rank = the sum of their ranks).
peft's `linear` type averages the A and B matrices separately, whose product is not the weighted sum of the
updates (cross terms), and `svd` approximates it at a lower rank: `cat` is the one that is task arithmetic exactly.
The sum is checked module by module before anything is written. DoRA's magnitude vectors do not add, so DoRA
adapters are refused; so are other peft types.

The result is a peft folder any loader reads, plus `combination.json` naming its parents (path, hash, method),
the weights and the combination type.

ReFT adapters are combined as a sum of their edits, never of their parameters (a sum of LoReFT rotations is not
a rotation): `adapters/reft_sum.py` applies h + sum_i w_i (f_i(h) - h), each parent at its own positions. The
folder holds a copy of each parent and `composition.json` (parents, weights).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.adapters.peft_adapter import checked_peft
from vlm_peft_bench.adapters.reft_sum import COMPOSITION_FILE, PARENTS
from vlm_peft_bench.methods.attach import adapter_hash
from vlm_peft_bench.methods.registry import family_for_folder
from vlm_peft_bench.methods.table import method_name
from vlm_peft_bench.paths import display_path

COMBINATION_FILE = "combination.json"
COMBINATION_TYPE = "cat"


def parse_weights(text: str, n: int) -> list[float]:
    try:
        weights = [float(w) for w in str(text).split(",")]
    except ValueError as err:
        raise AdapterError(f"--weights {text!r}: numbers separated by commas, one per adapter") from err
    if len(weights) != n:
        raise AdapterError(f"--weights {text!r}: {len(weights)} weights for {n} adapters")
    return weights


def combine(parents: list[str], weights: list[float], out: Path | str, base: str = "nanollava-tiny") -> Path:
    """Write the weighted combination of `parents` (LoRA adapters of one base) to `out`."""
    if len(parents) < 2:
        raise AdapterError("combine needs at least two adapters")
    methods = [method_name(p, family_for_folder(p)[0]) for p in parents]
    if set(methods) not in ({"lora"}, {"reft"}):
        raise AdapterError(f"combine adds LoRA adapters, or sums ReFT adapters' edits; not {', '.join(methods)} "
                           "together (DoRA's magnitude vectors and other methods' parameters do not add)")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty: choose another --out")
    parents_record = [{"path": display_path(Path(p)), "sha256": adapter_hash(Path(p)), "method": m}
                      for p, m in zip(parents, methods)]
    temp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(temp, ignore_errors=True)
    if methods[0] == "reft":
        for i, parent in enumerate(parents):  # each parent's files, as they are: applied at its own positions
            shutil.copytree(parent, temp / PARENTS / str(i))
        record = {"parents": parents_record, "weights": weights, "base": base,
                  "how": "sum of edits: h + sum_i w_i (f_i(h) - h), each parent at its own positions"}
        (temp / COMPOSITION_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    else:
        _combined_lora(parents, weights, base, temp)
        record = {"parents": parents_record, "weights": weights, "combination_type": COMBINATION_TYPE, "base": base,
                  "how": "peft add_weighted_adapter (cat): update = sum of weight x parent update, checked"}
        (temp / COMBINATION_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    if out.exists():
        out.rmdir()
    temp.rename(out)
    return out


def _combined_lora(parents: list[str], weights: list[float], base: str, into: Path) -> None:
    """Save the combined adapter, as peft writes it, to `into`; the work folder is removed whatever happens."""
    from peft import PeftModel

    from vlm_peft_bench.nanollava.loading import load_nanollava

    model = load_nanollava(base, "cpu", "float32").model
    work = Path(tempfile.mkdtemp(prefix="vlm-peft-bench-combine-"))
    try:
        names = []
        for i, parent in enumerate(parents):  # each under the installed model's names (any saved layout)
            config, state, _ = checked_peft(model, Path(parent))
            folder = work / f"parent{i}"
            folder.mkdir()
            (folder / "adapter_config.json").write_text(json.dumps(config, indent=2))
            save_file({k: t.contiguous() for k, t in state.items()}, str(folder / "adapter_model.safetensors"))
            names.append(f"parent{i}")
        peft_model = PeftModel.from_pretrained(model, str(work / names[0]), adapter_name=names[0])
        for name in names[1:]:
            peft_model.load_adapter(str(work / name), adapter_name=name)
        peft_model.add_weighted_adapter(names, weights, "combined", combination_type=COMBINATION_TYPE)
        check_sum(peft_model, names, weights)
        peft_model.save_pretrained(str(work / "saved"), selected_adapters=["combined"], save_embedding_layers=False)
        shutil.copytree(work / "saved" / "combined", into)
    except AdapterError:
        raise
    except Exception as err:
        raise AdapterError(f"peft could not combine {', '.join(parents)} ({type(err).__name__}: {err})") from err
    finally:
        shutil.rmtree(work, ignore_errors=True)


def check_sum(peft_model, names: list[str], weights: list[float]) -> None:
    """Every adapted module's combined update equals the weighted sum of its parents' updates."""
    from peft.tuners.lora import LoraLayer

    checked = 0
    for module_name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer) or "combined" not in module.lora_A:
            continue
        expected = sum(w * module.get_delta_weight(n) for n, w in zip(names, weights) if n in module.lora_A)
        got = module.get_delta_weight("combined")
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-6):
            raise AdapterError(f"{module_name}: the combined update is not the weighted sum of the parents' "
                               f"(largest difference {(got - expected).abs().max().item():.3g})")
        checked += 1
    if not checked:
        raise AdapterError("no LoRA module was combined")
