"""In-context vectors (Liu, Ye, Xing, Zou 2023, "In-context Vectors: Making In Context Learning More Effective and
Controllable Through Latent Space Steering"), following the authors' code (github.com/shengliu66/ICV:
`tasks/base.py` `obtain_icv`, `utils/pca.py`, `utils/llm_layers.py`):

1. K demonstrations (a seeded sample of the task's training split); each runs twice, one forward pass each: its
   query alone (the prompt) and its query followed by its answer.
2. For each, the difference of the two runs' states at their last token, every layer's output concatenated.
3. PCA of the K differences (centred; `svd_flip`'s sign rule: the largest entry of the first left singular vector
   is positive); the vector is the first principal direction plus the differences' mean, as the authors compute
   it (`components_.sum(0) + mean_`), cut back into one vector per layer.
4. Applied at every layer's MLP output, at every position (prompt and generated tokens), with strength lambda, by
   the authors' norm-keeping step (`adapters/steering.py`, `IcvIntervention`).

Differences from the authors' code, none of which changes the arithmetic: states are read in float32 (theirs:
float16 on a GPU); prompts carry nanoLLaVA's chat template and the demonstration's image.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from vlm_peft_bench.adapters.detect import AdapterError
from vlm_peft_bench.methods.recipe import select_layers
from vlm_peft_bench.steering.folder import save_steering
from vlm_peft_bench.steering.shift import Prompt, layer_count, prompts_sha256, runner_for
from vlm_peft_bench.steering.states import last_states


def leading_direction(differences: torch.Tensor) -> torch.Tensor:
    """[K, D] differences -> [D]: the first principal direction (sign by `svd_flip`) plus their mean."""
    data = differences.double()
    mean = data.mean(0)
    u, _, vh = torch.linalg.svd(data - mean, full_matrices=False)
    sign = torch.sign(u[u[:, 0].abs().argmax(), 0])
    return (vh[0] * (sign if sign != 0 else 1.0) + mean).float()


def demonstrations(task: str, k: int, seed: int) -> tuple[list[Prompt], list[str], list[int], str]:
    """K training examples of `task`, a seeded sample: (prompts, answers, their indices in the split, the split)."""
    from vlm_peft_bench.train.data import load_task, task_examples

    loaded = load_task(task)
    examples = task_examples(loaded)
    if not 2 <= k <= len(examples):
        raise AdapterError(f"--k {k}: the PCA needs at least 2 demonstrations, and {task}'s training split has "
                           f"{len(examples)}")
    chosen = sorted(random.Random(seed).sample(range(len(examples)), k))
    return ([Prompt(examples[i].text, examples[i].image) for i in chosen], [examples[i].target for i in chosen],
            chosen, loaded.config.training_split)


def derive_icv(base: str, task: str, out: Path | str, k: int = 16, lam: float = 0.1, layers="all", seed: int = 0,
               batch_size: int = 8, device: str = "cpu") -> Path:
    """The in-context vector of K demonstrations of `task`, saved as an `icv` folder."""
    if lam == 0 or lam != lam:
        raise AdapterError(f"lambda={lam}: a non-zero number is needed")
    prompts, answers, indices, split = demonstrations(task, k, seed)
    runner, _ = runner_for(base, device)
    chosen = select_layers(layers, layer_count(runner.model))
    texts, images = [p.text for p in prompts], [p.image for p in prompts]
    queries = last_states(runner, texts, images, chosen, None, batch_size, "queries")
    answered = last_states(runner, texts, images, chosen, answers, batch_size, "with answers")  # as trained: no space
    direction = leading_direction((answered - queries).reshape(k, -1)).reshape(len(chosen), -1)
    record = {"kind": "icv", "strength": float(lam), "base": base, "seed": seed, "k": k,
              "data": {"task": task, "split": split, "demonstrations": indices,
                       "inputs_sha256": prompts_sha256(prompts)},
              "source": "Liu et al. 2023, In-context Vectors (github.com/shengliu66/ICV)"}
    return save_steering(out, dict(zip(chosen, direction)), record, "all", "all", component="mlp_output")
