"""Bit compaction for carry trees over XOR-shared words.

A carry tree combines neighbouring (generate, propagate) bits level by level; at each level
only every other bit survives. Keeping the survivors packed in the low bits of a word (bit j
of the compacted word is bit 2j or 2j+1 of the wider one) halves what the next level's AND
gates cost in OTs and what its openings cost in bytes. Both are linear maps over GF(2), so
they apply to each party's XOR share on its own.
"""

from __future__ import annotations

import numpy as np

from rainbridge.protocols.mpc.ring import Ring

_EVEN_STEPS = (
    (1, 0x3333333333333333),
    (2, 0x0F0F0F0F0F0F0F0F),
    (4, 0x00FF00FF00FF00FF),
    (8, 0x0000FFFF0000FFFF),
    (16, 0x00000000FFFFFFFF),
)
_EVENS = np.uint64(0x5555555555555555)
_DEPOSIT_STEPS = (
    (16, 0x0000FFFF0000FFFF),
    (8, 0x00FF00FF00FF00FF),
    (4, 0x0F0F0F0F0F0F0F0F),
    (2, 0x3333333333333333),
    (1, 0x5555555555555555),
)


def low_mask(width: int) -> np.uint64:
    """The word with its low ``width`` bits set (1 ≤ width ≤ 64)."""
    if not 1 <= width <= 64:
        raise ValueError(f"a word width of {width} bits")
    return np.uint64((1 << width) - 1)


def even_bits(x: Ring, width: int) -> Ring:
    """Bits 0, 2, 4, … of the low ``width`` bits of each word, packed into the low
    ``width // 2`` bits (``width`` even)."""
    if width % 2:
        raise ValueError(f"an odd word width ({width}) has no pairs")
    v = (np.asarray(x, dtype=np.uint64) & low_mask(width)) & _EVENS
    # each step halves the gaps between the kept bits: a log-depth gather
    for shift, mask in _EVEN_STEPS:
        if shift >= width:
            break
        v = (v | (v >> np.uint64(shift))) & np.uint64(mask)
    return v


def odd_bits(x: Ring, width: int) -> Ring:
    """Bits 1, 3, 5, … of the low ``width`` bits of each word, packed likewise."""
    return even_bits(np.asarray(x, dtype=np.uint64) >> np.uint64(1), width)


def deposit_odd(x: Ring, width: int) -> Ring:
    """The inverse of :func:`odd_bits`: bit j of each word's low ``width // 2`` bits to bit
    2j + 1, the even bits zero."""
    if width % 2:
        raise ValueError(f"an odd word width ({width}) has no pairs")
    v = np.asarray(x, dtype=np.uint64) & low_mask(width // 2)
    # the gather's steps backwards: each spreads the bits to the previous step's mask
    for shift, mask in _DEPOSIT_STEPS:
        if 2 * shift < width:
            v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v << np.uint64(1)


def word_dtype(bits: int) -> type[np.unsignedinteger]:
    """The narrowest unsigned integer type holding ``bits`` bits."""
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if bits <= 8 * np.dtype(dt).itemsize:
            return dt
    raise ValueError(f"{bits} bits do not fit one word")


def carry_widths(leaves: int) -> tuple[list[int], list[bool]]:
    """The word widths of a carry tree's levels over ``leaves`` leaves (each even: a level of
    odd width gets one padding leaf on top), and which levels were padded."""
    if leaves < 2:
        raise ValueError(f"a carry tree over {leaves} leaves")
    widths: list[int] = []
    pads: list[bool] = []
    w = leaves
    while w > 1:
        widths.append(w + w % 2)
        pads.append(bool(w % 2))
        w = (w + 1) // 2
    return widths, pads
