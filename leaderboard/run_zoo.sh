#!/usr/bin/env bash
# Re-create leaderboard/results/: lmms-eval runs (with sample logs) of the untrained base and of every adapter
# in adapters_zoo/ on the embedded mini tasks, and a repr-rank file for each on cvbench_mini. Then run
# leaderboard/build.sh. About 30 minutes on a 2-core CPU. Run from anywhere with the project's environment
# active; TASKS and BATCH override the task list and batch size. Caption scores need SPICE (run
# `vlm-peft-bench spice setup` once): without it this refuses to start, unless NO_SPICE=1 says to go on without.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=leaderboard/results
BATCH=${BATCH:-16}
if [ -z "${TASKS:-}" ]; then  # every embedded mini task that exists in tasks/
  TASKS=$(for t in cvbench_mini coco_captions_mini vqa_v2_mini; do
            grep -qs "^task: $t\$" tasks/*/"$t".yaml && printf '%s,' "$t"; done)
  TASKS=${TASKS%,}
fi
if [[ ",$TASKS," == *,coco_captions* && "${NO_SPICE:-0}" != 1 ]] &&
   ! vlm-peft-bench spice status --json | grep -q '"available": true'; then
  vlm-peft-bench spice status >&2
  echo "run_zoo.sh: SPICE cannot run here, so the caption rows would carry no SPICE; run" \
       "\`vlm-peft-bench spice setup\` first, or set NO_SPICE=1 to go on without it" >&2
  exit 2
fi
if [ -z "${ONLY:-}" ]; then
  rm -rf "$OUT/lmms_eval" "$OUT/repr_rank"
else
  for id in $ONLY; do
    [ -f "adapters_zoo/$id.yaml" ] || { echo "run_zoo.sh: ONLY names $id, which has no card adapters_zoo/$id.yaml" >&2; exit 2; }
  done
fi
mkdir -p "$OUT/lmms_eval" "$OUT/repr_rank"

evaluate() {  # folder name, base, adapter folder (empty for the bare base)
  local args="pretrained=$2${3:+,adapter=$3}"
  rm -rf "${OUT:?}/lmms_eval/$1"  # a second results file for one row would be two rows; repr-rank overwrites its own
  lmms_eval --model vlreft --model_args "$args" --tasks "$TASKS" --batch_size "$BATCH" \
    --output_path "$OUT/lmms_eval/$1" --log_samples --no_resume
  vlm-peft-bench repr-rank --base "$2" ${3:+--adapter "$3"} --task cvbench_mini --out "$OUT/repr_rank/"
}

bases=""
for card in adapters_zoo/*.yaml; do
  id=$(basename "$card" .yaml)          # <recipe>__<base>__<task>
  base=${id#*__}; base=${base%%__*}
  case " $bases " in *" $base "*) ;; *) bases="$bases $base"
    [ -n "${ONLY:-}" ] && [ -d "$OUT/lmms_eval/base__$base" ] || evaluate "base__$base" "$base" "";; esac
  case " ${ONLY:-$id} " in *" $id "*) evaluate "$id" "$base" "adapters_zoo/weights/$id";; esac
done
# Sample logs repeat each item's record under every metric name: compress them (-n: no name or time stamp).
find "$OUT/lmms_eval" -name '*_samples_*.jsonl' -exec gzip -n -9 -f {} +
