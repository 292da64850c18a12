#!/usr/bin/env bash
# GPU benchmark of vlreft at nanoLLaVA's full size (random bf16 weights): see benchmarks/gpu.py for what it measures.
#
#   bash benchmarks/gpu.sh [--quick] [--items 16] [--repeats 5] [--new-tokens 32] [--peak-tflops T] [--out PATH]
#   bash benchmarks/gpu.sh --device cpu --size toy --quick      # CPU smoke path (what the tests run)
#
# Python: $PYTHON, else .venv/bin/python when present, else python3. The project pins transformers 4.45.1; when the
# interpreter has another version and wheels sit in .whl/ (transformers 4.45.1, tokenizers, huggingface_hub), they
# are installed once with --no-deps into $VLM_BENCH_SITE (default /tmp/vlm-peft-bench-site), which goes first on
# PYTHONPATH. Libraries that are still missing (lmms-eval, pyreft, peft) only skip the configurations needing them.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
export TRANSFORMERS_NO_ADVISORY_WARNINGS=1

pinned_transformers() {  # exit 0 when the interpreter (with the current PYTHONPATH) imports transformers 4.45.x
  "$PY" -c 'import sys, transformers; sys.exit(0 if transformers.__version__.startswith("4.45.") else 1)' \
    >/dev/null 2>&1
}

if ! pinned_transformers && compgen -G ".whl/*.whl" >/dev/null; then
  SITE="${VLM_BENCH_SITE:-/tmp/vlm-peft-bench-site}"
  if ! compgen -G "$SITE/transformers-4.45.*.dist-info" >/dev/null; then  # installed by an earlier run: reuse
    echo "gpu.sh: installing .whl/*.whl into $SITE (--no-deps)" >&2
    PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --disable-pip-version-check --no-deps --target "$SITE" .whl/*.whl
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

exec "$PY" -m benchmarks.gpu "$@"
