#!/usr/bin/env bash
# Regenerate this folder's leaderboard (leaderboard.json, schema.json, .csv, .md, leaderboard.png/.svg,
# repr_rank.png/.svg, index.html) from the committed results in leaderboard/results/, the zoo's cards and
# leaderboard/reported.yaml. No model runs (a few seconds); a second run changes no byte. The results
# themselves are re-created by leaderboard/run_zoo.sh. Run from anywhere with the project's environment active.
set -euo pipefail
cd "$(dirname "$0")/.."
vlm-peft-bench leaderboard build --results leaderboard/results --zoo adapters_zoo \
  --reported leaderboard/reported.yaml --out leaderboard
