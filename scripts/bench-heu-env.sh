#!/usr/bin/env bash
# SecretFlow's HEU (sf-heu 0.5.2b0) for `python -m rainbridge.bench he --peers heu`, in its
# own virtual environment (.venv-heu): its wheel brings a numpy of its own and stays apart
# from spu's pins in the peers' environment. 0.5.2b0 is the newest release that resolves for
# CPython 3.11 on x86_64 Linux here. Idempotent: when heu imports at that version, nothing is
# downloaded. HEU_VENV picks another directory.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
VENV=${HEU_VENV:-.venv-heu}
HEU_VERSION=0.5.2b0

check() {
  "$VENV/bin/python" - <<EOF 2>/dev/null
import importlib.metadata as md
from heu import numpy as hnp, phe
assert md.version("sf-heu") == "$HEU_VERSION", md.version("sf-heu")
print("sf-heu ready:", md.version("sf-heu"))
EOF
}

if [ -x "$VENV/bin/python" ] && check; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "sf-heu==$HEU_VERSION"
check || {
  echo "bench-heu: sf-heu installed but does not import; see the output above" >&2
  exit 1
}
