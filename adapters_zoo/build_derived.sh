#!/usr/bin/env bash
# The zoo's adapters that are not trained from a recipe on all of cvbench_mini, and their parents: LoRAs trained on
# the 2D and on the 3D items only, their weighted combinations (adapter arithmetic), the shift vector of the zoo's
# LoRA and an in-context vector. Each gets a card (adapters_zoo/<id>.yaml) and answers (adapters_zoo/answers/).
# Needs the LoRA that build.sh trains. About 15 minutes on a 2-core CPU. Run from the repository root with the
# project's environment active.
set -euo pipefail
cd "$(dirname "$0")/.."
W=adapters_zoo/weights
B=nanollava-tiny
T=cvbench_mini
for type in 2D 3D; do
  vlm-peft-bench train --recipe lora-r8 --task $T --base $B --seed 0 --where type=$type
done
for weights in 0.5,0.5 1,1; do
  id="combined-lora-r8-2D3D-w${weights/,/-}__${B}__${T}"
  rm -rf "${W:?}/$id"
  vlm-peft-bench combine "$W/lora-r8-type2D__${B}__$T" "$W/lora-r8-type3D__${B}__$T" --weights "$weights" \
    --base $B --out "$W/$id"
  vlm-peft-bench card "$W/$id" --task $T --base $B
done
id="shift-lora-r8__${B}__${T}"
rm -rf "${W:?}/$id"
vlm-peft-bench steer shift --adapter "$W/lora-r8__${B}__$T" --task $T --base $B --layers all --positions all \
  --alpha 1.0 --out "$W/$id"
vlm-peft-bench card "$W/$id" --task $T --base $B
id="icv-k16__${B}__${T}"
rm -rf "${W:?}/$id"
vlm-peft-bench steer icv --task $T --k 16 --lambda 0.1 --seed 0 --base $B --out "$W/$id"
vlm-peft-bench card "$W/$id" --task $T --base $B
