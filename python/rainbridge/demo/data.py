"""Deterministic synthetic data for the demo federation: a bank, a telecom operator, a tax bureau.

One population of people with a latent credit risk; each institution sees some of them and
records columns that depend on that risk, so the joint columns carry more signal than any one
party's (what later joint statistics and modeling show). The bank holds the label
(``default_12m``). IDs are 18-character resident-ID-like strings with a valid GB 11643 check
character, so they look and behave like the real thing (and leak nothing: they are made up).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

_REGIONS = np.array(
    [110101, 110105, 120101, 310101, 310115, 320102, 330106, 340104, 350102, 370102,
     410105, 420106, 430104, 440106, 440305, 450103, 500103, 510104, 520102, 530102,
     610104, 620102, 210102, 220102, 230102, 360102, 130102, 140105, 150102, 640104]
)  # fmt: skip
_PROVINCES = np.array(
    ["Beijing", "Beijing", "Tianjin", "Shanghai", "Shanghai", "Jiangsu", "Zhejiang", "Anhui",
     "Fujian", "Shandong", "Henan", "Hubei", "Hunan", "Guangdong", "Guangdong", "Guangxi",
     "Chongqing", "Sichuan", "Guizhou", "Yunnan", "Shaanxi", "Gansu", "Liaoning", "Jilin",
     "Heilongjiang", "Jiangxi", "Hebei", "Shanxi", "Inner Mongolia", "Ningxia"]
)  # fmt: skip
_WEIGHTS = np.array([7, 9, 5, 8, 10, 4, 2, 8, 2, 4, 6, 9, 9, 3, 7, 10, 8, 2, 7, 1, 3, 5, 7, 2])
_CHECK = "10X98765432"


def _check_char(body: str) -> str:
    total = sum(
        int(d) * w
        for d, w in zip(body, [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], strict=True)
    )
    return _CHECK[total % 11]


@dataclass(frozen=True)
class DemoSizes:
    population: int = 300_000
    bank: int = 200_000
    telecom: int = 150_000
    tax: int = 100_000


def population(n: int, seed: int = 20261122) -> dict[str, np.ndarray]:
    """``n`` made-up people with a latent risk score (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    region_idx = rng.integers(0, len(_REGIONS), n)
    age = np.clip(rng.normal(41, 12, n), 18, 80).astype(np.int64)
    year = 2026 - age
    month = rng.integers(1, 13, n)
    day = rng.integers(1, 29, n)
    seq = rng.permutation(n) % 1000
    bodies = [
        f"{_REGIONS[r]}{y:04d}{m:02d}{d:02d}{s:03d}"
        for r, y, m, d, s in zip(region_idx, year, month, day, seq, strict=True)
    ]
    ids = np.array([b + _check_char(b) for b in bodies])
    # Made-up IDs can collide (same place, birthday and sequence): keep the first of each.
    _, first = np.unique(ids, return_index=True)
    keep = np.sort(first)
    risk = rng.normal(0, 1, n)
    income = np.exp(rng.normal(9.0, 0.55, n) - 0.25 * risk)  # monthly, CNY
    return {
        "id": ids[keep],
        "age": age[keep],
        "gender": rng.choice(np.array(["F", "M"]), n)[keep],
        "province": _PROVINCES[region_idx][keep],
        "risk": risk[keep],
        "income": income[keep],
        "u": rng.random(n)[keep],
    }


def _take(pop: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in pop.items()}


def make_tables(sizes: DemoSizes = DemoSizes(), seed: int = 20261122) -> dict[str, pa.Table]:
    """The three institutions' tables, keyed ``bank``, ``telecom``, ``tax``."""
    pop = population(sizes.population, seed)
    n = len(pop["id"])
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(n)
    # Overlaps: the telecom knows 3 in 5 of the bank's customers, the tax bureau about 1 in 3,
    # and about half of the tax bureau's bank customers are the telecom's too.
    bank_idx = np.sort(order[: sizes.bank])
    tel_keep = sizes.telecom * 4 // 5
    tel_idx = np.sort(np.concatenate([order[:tel_keep], order[n - (sizes.telecom - tel_keep) :]]))
    tax_keep = sizes.tax * 7 // 10
    lo = max(0, tel_keep - tax_keep // 2)
    tax_idx = np.sort(
        np.concatenate(
            [order[lo : lo + tax_keep], order[sizes.bank : sizes.bank + sizes.tax - tax_keep]]
        )
    )

    b = _take(pop, bank_idx)
    m = len(bank_idx)
    logit = -2.6 + 1.1 * b["risk"] - 0.4 * (b["age"] < 25) + rng.normal(0, 0.5, m)
    default = (rng.random(m) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    bank = pa.table(
        {
            "customer_id": b["id"],
            "age": b["age"],
            "gender": b["gender"],
            "province": b["province"],
            "monthly_income": np.round(b["income"], 2),
            "credit_limit": np.round(b["income"] * rng.uniform(1.5, 4.0, m) / 100) * 100,
            "loan_balance": np.round(
                np.maximum(0, b["income"] * rng.gamma(2.0, 2.0, m) * (1 + 0.3 * b["risk"])), 2
            ),
            "months_on_book": rng.integers(1, 240, m),
            "num_products": rng.integers(1, 7, m),
            "max_overdue_days": np.maximum(0, np.round(rng.normal(3 + 8 * b["risk"], 6, m))).astype(
                np.int64
            ),
            "default_12m": default,
        }
    )
    t = _take(pop, tel_idx)
    k = len(tel_idx)
    telecom = pa.table(
        {
            "customer_id": t["id"],
            "tenure_months": np.clip(rng.normal(60 - 12 * t["risk"], 30, k), 1, 300).astype(
                np.int64
            ),
            "monthly_spend": np.round(
                np.maximum(8, rng.normal(80 + 0.004 * t["income"], 30, k)), 2
            ),
            "data_usage_gb": np.round(rng.gamma(2.0, 8.0, k), 1),
            "call_minutes": rng.poisson(300, k),
            "late_payments_12m": rng.poisson(np.exp(-1.0 + 0.9 * t["risk"])),
            "device_price": np.round(np.exp(rng.normal(7.6, 0.6, k) + 0.00002 * t["income"]), -1),
            "prepaid": (rng.random(k) < 0.2 + 0.1 * (t["risk"] > 1)).astype(np.int64),
        }
    )
    x = _take(pop, tax_idx)
    j = len(tax_idx)
    annual = x["income"] * 12 * rng.uniform(0.85, 1.15, j)
    tax = pa.table(
        {
            "customer_id": x["id"],
            "annual_taxable_income": np.round(annual, 2),
            "tax_paid": np.round(np.maximum(0, (annual - 60000) * 0.1), 2),
            "num_employers": rng.integers(1, 4, j),
            "business_owner": (rng.random(j) < 0.12).astype(np.int64),
            "years_filed": rng.integers(1, 20, j),
            "tax_arrears": (rng.random(j) < 1 / (1 + np.exp(-(-3.2 + 1.0 * x["risk"])))).astype(
                np.int64
            ),
        }
    )
    return {"bank": bank, "telecom": telecom, "tax": tax}


def write_demo_data(out_dir: str | Path, sizes: DemoSizes = DemoSizes()) -> dict[str, Path]:
    """Write each institution's table as CSV under ``out_dir/<party>/``; return the paths."""
    paths: dict[str, Path] = {}
    names = {"bank": "customers.csv", "telecom": "subscribers.csv", "tax": "taxpayers.csv"}
    for party, table in make_tables(sizes).items():
        p = Path(out_dir) / party / names[party]
        p.parent.mkdir(parents=True, exist_ok=True)
        pacsv.write_csv(table, p)
        paths[party] = p
    return paths
