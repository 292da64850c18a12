#!/usr/bin/env bash
# Regenerate every adapter of the zoo for nanollava-tiny on cvbench_mini: weights in adapters_zoo/weights/,
# one card per adapter in adapters_zoo/*.yaml (trainable parameters, validation and test scores, hashes).
# About 12 minutes on a 2-core CPU. Run from the repository root with the project's environment active.
set -euo pipefail
cd "$(dirname "$0")/.."
for recipe in reft-r4-all lora-r8 dora-r8 full-ft prefix-16 pt-lora; do
  vlm-peft-bench train --recipe "$recipe" --task cvbench_mini --base nanollava-tiny --seed 0
done
