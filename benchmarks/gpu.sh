#!/usr/bin/env bash
# GPU benchmark of vlreft at nanoLLaVA's full size (random bf16 weights): see benchmarks/gpu/__init__.py for what it measures.
#
#   bash benchmarks/gpu.sh [--quick] [--items 16] [--repeats 5] [--new-tokens 32] [--peak-tflops T] [--out PATH]
#   bash benchmarks/gpu.sh --device cpu --size toy --quick      # CPU smoke path (what the tests run)
#
# Python: $PYTHON, else .venv/bin/python when present, else python3, with whatever transformers (4.45.1 up to 5.x) and
# peft it has. Wheels in .whl/ ($VLM_BENCH_WHEELS; a git-ignored folder: the libraries a borrowed machine lacks, e.g. lmms-eval for the
# llava_hf baseline, or a whole other stack) are installed once with --no-deps into $VLM_BENCH_SITE (default
# /tmp/vlm-peft-bench-site), which goes first on PYTHONPATH. Libraries that are still missing (lmms-eval, peft, pyreft)
# only skip the configurations needing them.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
export TRANSFORMERS_NO_ADVISORY_WARNINGS=1

WHEELS="${VLM_BENCH_WHEELS:-.whl}"  # the tests point this elsewhere, so a developer's .whl/ cannot change them
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  SITE="${VLM_BENCH_SITE:-/tmp/vlm-peft-bench-site}"
  wanted=$(cd "$WHEELS" && ls -- *.whl | sort | sha256sum | cut -c1-16)
  if [ "$(cat "$SITE/.installed" 2>/dev/null)" != "$wanted" ]; then  # the same wheels installed by an earlier run
    echo "gpu.sh: installing $WHEELS/*.whl into $SITE (--no-deps)" >&2
    rm -rf "$SITE"
    PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --disable-pip-version-check --no-deps --target "$SITE" "$WHEELS"/*.whl
    echo "$wanted" > "$SITE/.installed"
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

exec "$PY" -m benchmarks.gpu "$@"
