"""Compute settings: a Ray address that is public is refused (the isolation rule), bad
settings are named, and the local engine's map keeps the items' order."""

from __future__ import annotations

import asyncio
import time

import pytest

from rainbridge.compute import (
    ComputeSettings,
    LocalEngine,
    RayEngine,
    check_ray_address,
    make_engine,
)
from rainbridge.errors import ConfigError


@pytest.mark.parametrize(
    "address",
    ["auto", "127.0.0.1:6379", "10.20.0.5:6379", "192.168.1.9:6379", "ray://10.1.2.3:10001",
     "localhost:6379", "[::1]:6379", "[fd00::5]:6379"],
)  # fmt: skip
def test_private_addresses_are_accepted(address: str) -> None:
    check_ray_address(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8:6379", "ray://1.1.1.1:10001", "[2001:4860:4860::8888]:6379"]
)
def test_a_public_address_is_refused(address: str) -> None:
    with pytest.raises(ConfigError, match="public address"):
        check_ray_address(address)


@pytest.mark.parametrize("address", [":6379", "no-such-host.invalid:6379"])
def test_an_address_without_a_resolvable_host_is_refused(address: str) -> None:
    with pytest.raises(ConfigError, match="ray_address"):
        check_ray_address(address)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ComputeSettings(engine="spark"), "compute engine 'spark'"),
        (ComputeSettings(workers=-1), "workers"),
        (ComputeSettings(task_cpus=0), "task_cpus"),
        (ComputeSettings(engine="ray", ray_address="8.8.4.4:6379"), "public address"),
    ],
)
def test_bad_settings_are_named(settings: ComputeSettings, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_engine(settings)


def test_make_engine_and_round_trip() -> None:
    s = ComputeSettings(engine="ray", workers=3, task_cpus=2.0, work_dir="/shared")
    assert ComputeSettings.from_dict(s.to_dict()) == s
    assert isinstance(make_engine(s), RayEngine)
    assert isinstance(make_engine(None), LocalEngine)
    assert make_engine({"workers": 2}).workers == 2


def _slow_square(x: int) -> int:
    time.sleep(0.01 * (5 - x % 5))  # later items finish first
    return x * x


def test_local_map_keeps_the_order_of_its_items() -> None:
    engine = LocalEngine(ComputeSettings(workers=4))
    out = asyncio.run(engine.map(_slow_square, [(i,) for i in range(20)]))
    assert out == [i * i for i in range(20)]
    assert asyncio.run(engine.map(_slow_square, [])) == []
