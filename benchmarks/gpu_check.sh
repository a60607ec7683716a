#!/usr/bin/env bash
# benchmarks/latency.py on a GPU machine without internet, from the repo root:
#
#     bash benchmarks/gpu_check.sh
#
# The machine's image has jax with CUDA, flax and transformers 5, which has no Flax models:
# the wheels in .whl/ (transformers 4.57.6, huggingface_hub 0.36.0, tokenizers 0.22.1; an
# ignored folder, so carried along explicitly) go to /tmp/site, ahead of the image's
# packages. Results go to $OUT (default /tmp/out): latency_gpu.log and latency_gpu.json.
set -euo pipefail

OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
if ! compgen -G ".whl/*.whl" > /dev/null; then
    echo "no wheels in $PWD/.whl: carry the .whl folder along (see this script's header)" >&2
    exit 1
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD

nvidia-smi -L || true
python3 - <<'PY'
import sys
import warnings

warnings.filterwarnings("ignore")
import flax, huggingface_hub, jax, jaxlib, tokenizers, transformers  # noqa: E401

print(f"python {sys.version.split()[0]}; jax {jax.__version__}, jaxlib {jaxlib.__version__}, "
      f"flax {flax.__version__}, transformers {transformers.__version__} "
      f"({transformers.__file__}), huggingface_hub {huggingface_hub.__version__}, "
      f"tokenizers {tokenizers.__version__}")
print(f"backend {jax.default_backend()}: {jax.devices()}")
PY

PYTHONUNBUFFERED=1 python3 benchmarks/latency.py --random-init --tokens 128 --protocols aby3 \
    --emulation protocol,ideal --json "$OUT/latency_gpu.json" 2>&1 | tee "$OUT/latency_gpu.log"
