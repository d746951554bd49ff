#!/usr/bin/env bash
# Peer libraries for side-by-side benchmarks, in their own virtual environment (.venv-peers):
# the product never imports them, and SecretFlow's spu pins its own numpy and jax.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
if [ ! -x .venv-peers/bin/python ]; then
  "$PY" -m venv .venv-peers
fi
.venv-peers/bin/python -m pip install -q --upgrade pip
# OpenMined PSI (ECDH over P-256, client/server) and SecretFlow's PSI (inside spu 0.9.5:
# ECDH over Curve25519/FourQ, KKRT, RR22 between two processes over brpc links).
.venv-peers/bin/python -m pip install -q openmined-psi "spu==0.9.5" psutil
.venv-peers/bin/python -c "import openmined_psi, spu.psi; print('peers ready')" 2>/dev/null \
  || .venv-peers/bin/python -c "import private_set_intersection.python as psi; import spu.psi; print('peers ready')"
