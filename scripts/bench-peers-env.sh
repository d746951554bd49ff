#!/usr/bin/env bash
# Peer libraries for side-by-side benchmarks, in their own virtual environment (.venv-peers,
# never the product's .venv): the product never imports them, and SecretFlow's spu pins its
# own numpy and jax.
#
#   openmined-psi 2.0.6  OpenMined's PSI (ECDH over P-256, client/server); its wheel provides
#                        the module `private_set_intersection` (there is no `openmined_psi`).
#   spu 0.9.5            SecretFlow's PSI (spu.psi.psi_execute over spu.libspu.link brpc
#                        links: ECDH over Curve25519 or FourQ, KKRT, RR22).
#   mpyc 0.11            MPyC (Shamir sharing, three parties) for the MPC benchmark.
#   phe 1.5 + gmpy2     python-paillier, the HE benchmark's reference (bench he).
#
# Both install from wheels for CPython 3.11 on x86_64 Linux. Idempotent: when both import,
# nothing is downloaded. PEERS_VENV picks another directory (e.g. to try a fresh install).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
VENV=${PEERS_VENV:-.venv-peers}
OPENMINED_VERSION=2.0.6
SPU_VERSION=0.9.5
MPYC_VERSION=0.11
PHE_VERSION=1.5.0

check() {
  "$VENV/bin/python" - <<EOF 2>/dev/null
import importlib.metadata as md
import private_set_intersection.python
import spu.libspu.link
import spu.psi
import mpyc
import phe, gmpy2
assert md.version("phe") == "$PHE_VERSION", md.version("phe")
assert md.version("mpyc") == "$MPYC_VERSION", md.version("mpyc")
assert md.version("openmined_psi") == "$OPENMINED_VERSION", md.version("openmined_psi")
assert md.version("spu") == "$SPU_VERSION", md.version("spu")
print("peers ready: openmined-psi", md.version("openmined_psi"), "spu", md.version("spu"),
      "mpyc", md.version("mpyc"))
EOF
}

if [ -x "$VENV/bin/python" ] && check; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "openmined-psi==$OPENMINED_VERSION" "spu==$SPU_VERSION" \
  "mpyc==$MPYC_VERSION" "phe==$PHE_VERSION" gmpy2
check || {
  echo "bench-peers: the peer libraries installed but do not import; see the output above" >&2
  exit 1
}
