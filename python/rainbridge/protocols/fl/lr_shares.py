"""The vertical LR's steps on shares (:mod:`.vertical_lr`): the residual ``σ(z) - y`` over
the pair (L, F_1), and each party's gradient ``X_pᵀe`` as products of private matrices.

Both rest on public bounds, each enforced where the value is known in the clear: a
feature's magnitude (clipped at :data:`MAX_ABS_FEATURE` before encoding) and a partial
score's (a training past :data:`MAX_PARTIAL_SCORE` is refused by its owner). From them
follow the width of the sigmoid's comparisons (:func:`score_bits`), the features' entry
width (:func:`feature_bits`) and the residual's (:func:`residual_bits`), so that every
comparison and product runs over the bits its values need and is exact. Security model and
what each party learns: :mod:`.vertical_lr`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rainbridge.errors import ConfigError
from rainbridge.protocols.mpc.engine import Mpc, Secret
from rainbridge.protocols.mpc.ring import Ring, encode

#: |standardised feature| above this is clipped before encoding (keeps products in range)
MAX_ABS_FEATURE = 1000.0


def feature_bits(frac: int) -> int:
    """Bits of a signed encoded feature: |x| ≤ MAX_ABS_FEATURE at ``frac`` fractional bits
    (27 at 16), a public bound, so where a gradient's products without a dealer let the
    features choose (silent OT), they choose by that many bits of each entry, not 64."""
    return math.ceil(MAX_ABS_FEATURE * 2**frac).bit_length() + 1


#: |partial score| above this stops a training: the SGD diverges there (1/2 + z/4 means
#: nothing, σ is 0 or 1 to the last bit); a Taylor residual, which nothing clamps, must keep
#: its products in the ring, and the piecewise sigmoid compares sums of scores over the
#: bits :func:`score_bits` gives
MAX_PARTIAL_SCORE = 1024.0


def score_bits(parties: int, frac: int) -> int:
    """Width of the piecewise sigmoid's comparisons (:meth:`Mpc.ltz_bit`): the fewest bits
    that hold, signed, ``±(z + 1/2)`` and ``±(z - 1/2)`` for a sum z of ``parties``
    encoded partial scores each at most :data:`MAX_PARTIAL_SCORE` (each rounded by up to
    half a unit): 29 bits for two or three parties at 16 fractional bits."""
    bound = math.ceil((parties * MAX_PARTIAL_SCORE + 1.5) * 2**frac) + parties
    return min(64, bound.bit_length() + 1)


async def residual_share(
    mpc: Mpc,
    z: npt.NDArray[np.float64],
    extra: Ring,
    y: npt.NDArray[np.float64] | None,
    sigmoid: str,
    parties: int,
) -> Ring:
    """This party's share of ``σ(z) - y`` over the pair (L, F_1): ``z`` its own partial
    score, ``extra`` its shares of the other feature parties' (zeros without them), every
    one of the ``parties`` scores at most MAX_PARTIAL_SCORE (checked by its owner)."""
    frac = mpc.frac
    if sigmoid == "taylor":
        e = 0.25 * z
        if y is not None:
            e = e + 0.5 - y
        return encode(e, frac) + extra
    b = len(z)
    # each party's own partial score is already its share of their sum: nothing to send
    # (every later step opens only values masked afresh, so shares need not look random)
    s = mpc.add_public(Secret(encode(z, frac) + extra, frac), 0.5)
    # clamp(s, 0, 1) = s·[s > 0] - (s - 1)·[s > 1]: both comparisons in one, both products
    # in one selection, half the rounds of a maximum and then a minimum; compared over the
    # bits the scores' public bound needs, not the whole ring
    both = Secret(np.concatenate([s.share, mpc.add_public(s, -1.0).share]), s.frac)
    sign = await mpc.ltz_bit(mpc.neg(both), score_bits(parties, frac))
    above = await mpc.select(sign, both)
    e_share = above.share[:b] - above.share[b:]
    if y is not None:
        e_share -= encode(y, frac)
    return e_share


async def pair_gradient(
    mpc: Mpc,
    x_int: Ring,
    e_share: Ring,
    owners: Sequence[int],
    dims: Mapping[int, int],
    e_bound: tuple[float, int],
    narrow: bool | None = None,
) -> npt.NDArray[np.float64] | None:
    """``X_pᵀ e / B`` over one pair for each engine party p in ``owners`` (``dims[p]`` its
    weights), revealed to p only; this party's gradient, or None if it owns none.
    ``e_bound``: a public bound on |e| (1 for the piecewise sigmoid) and the number of
    parts e was encoded in (:func:`residual_offset`). ``narrow`` (by default where products
    come straight from OTs, :attr:`Provider.direct_products`): the residual made narrow
    first (:class:`NarrowResidual`)."""
    me = mpc.party
    b = len(e_share)
    if narrow is None:
        narrow = mpc.provider.direct_products
    form = await NarrowResidual.make(mpc, e_share, e_bound) if narrow else None
    grad = None
    for p in (0, 1):
        if p not in owners:
            continue
        d_p = dims[p]
        if d_p == 0:
            if me == p:
                grad = np.zeros(0)
            continue
        xt = x_int.T if me == p else None
        if form is not None:
            share = await form.product(mpc, xt, p, d_p)
        else:
            cross = await mpc.cross_product(
                xt, e_share[:, None] if me != p else None, left=p, shape=(d_p, b, 1),
                x_bits=feature_bits(mpc.frac),
            )  # fmt: skip
            share = cross.share[:, 0]
            if xt is not None:
                share = share + xt @ e_share  # the local part, wrapping like the shares
        total = await mpc.reveal(Secret(share, 2 * mpc.frac), to=p)
        if total is not None:
            grad = np.asarray(total, dtype=np.float64) / b
    return grad


def residual_offset(e_bound: float, frac: int, parties: int) -> int:
    """E with |e| ≤ E for a residual |e| ≤ ``e_bound`` encoded at ``frac`` fractional bits
    as a sum of ``parties`` parts, each rounded by up to half a unit."""
    return math.ceil(e_bound * 2**frac) + parties


def residual_bits(e_bound: float, frac: int, parties: int) -> int:
    """Bits of ``u = e + E`` (:func:`residual_offset`): 18 for the piecewise sigmoid's
    |e| ≤ 1 at 16 fractional bits."""
    return (2 * residual_offset(e_bound, frac, parties)).bit_length()


@dataclass
class NarrowResidual:
    """The residual in a form whose products choose by K bits, not 64.

    The encoded residual is small (|e| ≤ E), its shares are not. Each party keeps its
    share's low K bits, ``u_i = (e_i + [i = 0]·E) mod 2^K`` (K = :func:`residual_bits`),
    so ``u_0 + u_1 = e + E + c·2^K`` over the integers, c the carry out of bit K - 1:
    computed as a comparison's top bit (:meth:`Mpc.ltz_bit` over K + 1 bits), XOR-shared.
    Then ``Xᵀe = Xᵀu_p + Xᵀu_o - 2^K·Xᵀc - E·Xᵀ1`` with ``c = c_p + (1 - 2·c_p)·c_o``:
    p's own parts are local, ``Xᵀu_o`` is a product of private matrices choosing by K bits,
    ``(X·(1 - 2c_p))ᵀc_o`` one choosing by one bit. One carry serves both directions of the
    pair."""

    u: Ring
    carry: Ring
    k: int
    offset: np.uint64

    @classmethod
    async def make(cls, mpc: Mpc, e_share: Ring, e_bound: tuple[float, int]) -> NarrowResidual:
        k = residual_bits(e_bound[0], mpc.frac, e_bound[1])
        if k >= 64:
            raise ConfigError(f"a residual of {k} bits has no narrow form")
        offset = np.uint64(residual_offset(e_bound[0], mpc.frac, e_bound[1]))
        u = (e_share + (offset if mpc.party == 0 else np.uint64(0))) & np.uint64((1 << k) - 1)
        carry = await mpc.ltz_bit(Secret(u, 0), k + 1)  # bit k of u_0 + u_1
        return cls(u, carry, k, offset)

    async def product(self, mpc: Mpc, xt: Ring | None, p: int, d_p: int) -> Ring:
        """This party's share of ``X_pᵀe`` (``xt``: ``X_pᵀ`` at p, None at the other)."""
        u, c, b = self.u, self.carry, len(self.u)
        x_bits = feature_bits(mpc.frac)
        flip = None
        if xt is not None:
            flip = xt.view(np.int64) * (1 - 2 * c.astype(np.int64))[None, :]
        by_u = await mpc.cross_product(
            xt, None if xt is not None else u[:, None], left=p, shape=(d_p, b, 1),
            x_bits=x_bits, y_bits=self.k,
        )  # fmt: skip
        # -x needs one bit more than x at x = -2^(x_bits-1)
        by_c = await mpc.cross_product(
            flip, None if xt is not None else c[:, None], left=p, shape=(d_p, b, 1),
            x_bits=x_bits + 1, y_bits=1,
        )  # fmt: skip
        carried = by_c.share[:, 0]
        share = by_u.share[:, 0]
        if xt is not None:
            carried = carried + xt @ c  # wraps modulo 2^64, as shares do
            share = share + xt @ u - self.offset * xt.sum(axis=1, dtype=np.uint64)
        return share - (carried << np.uint64(self.k))


__all__ = [
    "MAX_ABS_FEATURE",
    "MAX_PARTIAL_SCORE",
    "NarrowResidual",
    "feature_bits",
    "pair_gradient",
    "residual_bits",
    "residual_offset",
    "residual_share",
    "score_bits",
]
