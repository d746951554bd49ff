#!/usr/bin/env bash
# CrypTen for the side-by-side MPC benchmark, in its own virtual environment (.venv-crypten):
# torch is large (several GiB with its CUDA libraries, unused here), so it stays out of the
# product's .venv and of .venv-peers.
#
#   torch 2.13.0     from the package registry (the CPU is enough; the CUDA libraries come along)
#   crypten 0.4.1    installed without its declared dependencies, because it names the
#                    retired `sklearn` package (which refuses to install) and torchvision
#                    and tensorboard, which the benchmark never imports; the rest is listed
#
# Idempotent: when CrypTen imports, nothing is downloaded. CRYPTEN_VENV picks another directory.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
VENV=${CRYPTEN_VENV:-.venv-crypten}
TORCH_VERSION=2.13.0
CRYPTEN_VERSION=0.4.1

check() {
  "$VENV/bin/python" - <<EOF 2>/dev/null
import importlib.metadata as md
import sys, types
shim = types.ModuleType("torch.onnx._internal.registration")
shim.registry = None
sys.modules["torch.onnx._internal.registration"] = shim
import crypten, torch
assert md.version("crypten") == "$CRYPTEN_VERSION"
assert torch.__version__.split("+")[0] == "$TORCH_VERSION", torch.__version__
print("crypten ready:", md.version("crypten"), "torch", torch.__version__)
EOF
}

if [ -x "$VENV/bin/python" ] && check; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION"
"$VENV/bin/python" -m pip install -q --no-deps "crypten==$CRYPTEN_VERSION"
"$VENV/bin/python" -m pip install -q --no-warn-conflicts omegaconf onnx pandas pyyaml scipy scikit-learn future
check || {
  echo "bench-crypten: CrypTen installed but does not import; see the output above" >&2
  exit 1
}
