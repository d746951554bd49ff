"""The multi-lender count between four lenders and a merger in one process (their messages
JSON-encoded and held to the data plane's limit), against a plain count over the windows as
they were at the build: generated applications, and generated changes to a lender's file
between the build and the count. A count is exact for the build's snapshot, or refused
naming the lender whose window changed, or (as configured) asked again on a rebuilt window;
never the answer of a window that mixes two moments."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inprocess_plane import Plane

from rainbridge.protocols import mlq

LENDERS = ["bank", "consumer", "fintech", "microloan"]
END = dt.date(2026, 12, 1)
DAYS = 30
PEOPLE = ["B-1", "W-1", "007", "7", "张三", "a,b", "x y", 'Q"1']

Apps = list[tuple[str, int]]  # (ID, days before END)


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Plane, Path]:
    base = tmp_path_factory.mktemp("mlq-nodes")
    plane = Plane()
    for name in [*LENDERS, "operator"]:
        plane.node(base, name)
    return plane, base


_names = itertools.count()


def write_apps(path: Path, apps: Apps) -> None:
    lines = ["customer_id,applied_on"]
    for ident, back in apps:
        quoted = '"' + ident.replace('"', '""') + '"'
        lines.append(f"{quoted},{(END - dt.timedelta(days=back)).isoformat()}")
    path.write_text("\n".join(lines) + "\n")


def window(apps: Apps) -> set[str]:
    return {i for i, back in apps if 0 <= back < DAYS}


def setup(
    plane: Plane, base: Path, apps: dict[str, Apps], on_change: str = "refuse"
) -> tuple[str, dict[str, Path]]:
    svc = f"m{next(_names)}"
    paths = {}
    for lender in LENDERS:
        node = plane.nodes[lender]
        paths[lender] = base / f"{svc}-{lender}.csv"
        write_apps(paths[lender], apps[lender])
        node.owners.add_dataset(svc, str(paths[lender]), "customer_id")
        node.mlq.mlq_join(
            name=svc, lenders=LENDERS, merger="operator", dataset=svc, date_column="applied_on",
            window_days=DAYS, rate_per_s=10_000.0, on_change=on_change,
        )  # fmt: skip
    plane.nodes["operator"].mlq.mlq_join(
        name=svc, lenders=LENDERS, merger="operator", window_days=DAYS, on_change=on_change
    )
    return svc, paths


def build(plane: Plane, svc: str) -> dict[str, Any]:
    return dict(asyncio.run(plane.nodes["operator"].mlq.mlq_build(svc, END.isoformat())))


def count(plane: Plane, svc: str, asker: str, ident: str) -> int:
    out = asyncio.run(plane.nodes[asker].mlq.mlq_count(svc, ident))
    return int(out["count"])


def truth(windows: dict[str, set[str]], asker: str, ident: str) -> int:
    return sum(ident in windows[lender] for lender in LENDERS if lender != asker)


def test_the_observed_drift_is_refused_then_counted_on_a_rebuild(
    consortium: tuple[Plane, Path],
) -> None:
    plane, base = consortium
    apps = {
        "bank": [("B-1", 3)],
        "fintech": [("B-1", 10)],
        "consumer": [("W-1", 1)],
        "microloan": [("W-1", 20)],
    }
    svc, paths = setup(plane, base, apps)
    built = build(plane, svc)
    assert set(built["windows"]) == set(LENDERS)  # each lender's digest, with the build
    assert count(plane, svc, "microloan", "W-1") == 1
    assert count(plane, svc, "microloan", "B-1") == 2
    # the microloan's own file changes after the build
    write_apps(paths["microloan"], [("B-1", 1)])
    for ident in ("W-1", "B-1"):
        with pytest.raises(mlq.WindowChangedError, match=r"'microloan'.*rebuild") as err:
            count(plane, svc, "microloan", ident)
        assert err.value.lender == "microloan"
    # another lender asking is told too: the microloan refuses to answer for a stale window
    with pytest.raises(mlq.WindowChangedError, match="'microloan'"):
        count(plane, svc, "bank", "W-1")
    build(plane, svc)  # the fix the message names
    assert count(plane, svc, "microloan", "W-1") == 1
    assert count(plane, svc, "microloan", "B-1") == 2
    assert count(plane, svc, "bank", "B-1") == 2
    # a change outside the window's dates changes nothing: counts go on
    write_apps(paths["microloan"], [("B-1", 1), ("W-1", 45), ("B-1", -3)])
    assert count(plane, svc, "microloan", "W-1") == 1
    assert count(plane, svc, "bank", "B-1") == 2


def test_a_lost_frozen_window_is_refused(consortium: tuple[Plane, Path]) -> None:
    plane, base = consortium
    apps = {lender: [("B-1", 2)] for lender in LENDERS}
    svc, _ = setup(plane, base, apps)
    built = build(plane, svc)
    folder = plane.nodes["bank"].mlq.windows.folder(svc)
    (folder / f"{built['build']}.json").unlink()
    with pytest.raises(mlq.WindowChangedError, match="'bank' holds no frozen window"):
        count(plane, svc, "bank", "B-1")
    with pytest.raises(mlq.StaleBuildError):  # and nobody can count on a window it lost
        count(plane, svc, "fintech", "B-1")


apps_of = st.lists(st.tuples(st.sampled_from(PEOPLE), st.integers(-5, 50)), max_size=12)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.fixed_dictionaries({lender: apps_of for lender in LENDERS}),
    st.sampled_from(LENDERS),
    apps_of,
    st.sampled_from(LENDERS),
    st.sampled_from(["refuse", "rebuild"]),
)
def test_counts_are_of_one_snapshot_or_refused(
    consortium: tuple[Plane, Path],
    apps: dict[str, Apps],
    changed: str,
    new_apps: Apps,
    asker: str,
    on_change: str,
) -> None:
    plane, base = consortium
    svc, paths = setup(plane, base, apps, on_change)
    build(plane, svc)
    at_build = {lender: window(apps[lender]) for lender in LENDERS}
    for ident in PEOPLE[:4]:
        assert count(plane, svc, asker, ident) == truth(at_build, asker, ident), ident
    write_apps(paths[changed], new_apps)
    now = {**at_build, changed: window(new_apps)}
    for ident in PEOPLE[:4]:
        if now[changed] == at_build[changed]:
            # the window's IDs are the same: the build still describes the data
            assert count(plane, svc, asker, ident) == truth(at_build, asker, ident)
        elif on_change == "refuse":
            with pytest.raises(mlq.WindowChangedError) as err:
                count(plane, svc, asker, ident)
            assert err.value.lender == changed
        else:
            # the merger rebuilt the window on request: the count is of the new snapshot
            assert count(plane, svc, asker, ident) == truth(now, asker, ident)
            at_build = now
    assert plane.largest <= 2 << 20
