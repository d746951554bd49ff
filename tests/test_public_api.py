"""The native module's stubs match it, and public modules export what they define."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

import rainbridge


def test_core_stubs_match_the_native_module() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "rainbridge._core"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    "name",
    [
        "rainbridge.crypto.groups",
        "rainbridge.jobs.spec",
        "rainbridge.protocols.psi",
        "rainbridge.data",
        "rainbridge.components",
        "rainbridge.crypto",
    ],
)
def test_all_is_complete(name: str) -> None:
    mod = importlib.import_module(name)
    exported = set(mod.__all__)
    for attr in exported:
        assert hasattr(mod, attr), f"{name}.__all__ names {attr} which does not exist"
    public = {
        n
        for n, v in vars(mod).items()
        if not n.startswith("_")
        and (inspect.isclass(v) or inspect.isfunction(v))
        and getattr(v, "__module__", "") == name
    }
    assert public <= exported, f"{name}: not in __all__: {sorted(public - exported)}"
    assert rainbridge.__version__
