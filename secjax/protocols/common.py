"""Arithmetic helpers that semi2k and aby3 share: party masks and probabilistic truncation.

Truncation (both protocols) is the probabilistic truncation of Escudero, Ghosh, Keller,
Rachuri and Scholl, "Improved Primitives for MPC over Mixed Arithmetic-Binary Circuits"
(CRYPTO 2020, section 5.1), also SPU's ``TruncAPr``. For a shared ``x`` and a public offset
``o`` with ``0 <= x + o < 2^(k-1)`` and a shared uniform ``r`` (with shares of ``r' >> d``
and of ``msb(r)``, where ``r' = r mod 2^(k-1)``), two parties open ``c = x + o + r`` and take

    y = (c' >> d) - (r' >> d) + (c_{k-1} XOR r_{k-1}) * 2^(k-1-d) - (o >> d),

``c' = c mod 2^(k-1)``. Since ``x + o < 2^(k-1)``, the carry out of ``x + o + r'`` is
``c_{k-1} XOR r_{k-1}`` exactly, so ``y`` is ``floor(x / 2^d)`` or ``floor(x / 2^d) + 1``:
**the error is at most one unit in the last place, always**; there is no chance of a large
error for inputs in the stated range (the SecureML-style local truncation has one). ``c`` is
``x`` plus a uniform ring element, so it reveals nothing. The offset is ``2^(k-2)`` for a
value of unknown sign (``|x| <= 2^(k-2)``) and 0 for one known to be nonnegative (a square:
``0 <= x < 2^(k-1)``, the whole positive half of the ring, at the same cost).
"""

from __future__ import annotations

import jax.numpy as jnp

from secjax.ring import power_of_two, shift_amount


def at_party(comm, like, party: int, value, other=0):
    """``value`` at party ``party``, ``other`` at every other party (party axis first)."""
    idx = comm.party_index(like)
    return jnp.where(idx == party, value, jnp.asarray(other, like.dtype)).astype(like.dtype)


def trunc_mask(ring, r, bits):
    """The dealer's view: ``(r' >> bits, msb(r))`` for a uniform ``r``, ``r' = r mod 2^(k-1)``."""
    k = ring.bits
    low = r & jnp.asarray((1 << (k - 1)) - 1, r.dtype)
    return low >> shift_amount(bits, low), r >> (k - 1)


def offset_for(ring, nonnegative: bool) -> int:
    """The public offset that brings the values to truncate into ``[0, 2^(k-1))``."""
    return 0 if nonnegative else 1 << (ring.bits - 2)


def trunc_offset(ring, x_share_first, offset):
    """Add the public ``offset`` (to the first party's share only: pass its share)."""
    return x_share_first + jnp.asarray(offset, ring.dtype)


def trunc_finish(ring, c, rc, rb, bits, first, offset):
    """One party's share of the truncation given the opened ``c`` (public to it), its shares
    ``rc`` of ``r' >> bits`` and ``rb`` of ``msb(r)``, ``first`` (bool array): whether this
    party adds the public terms, and the public ``offset`` that ``c`` includes."""
    k = ring.bits
    dtype = ring.dtype
    ct = c >> (k - 1)
    c_low = (c & jnp.asarray((1 << (k - 1)) - 1, dtype)) >> shift_amount(bits, c)
    carry = jnp.where(first, ct, 0).astype(dtype) + rb - 2 * ct * rb  # ct XOR r_{k-1}
    offset = jnp.asarray(offset, dtype)
    public = c_low - (offset >> shift_amount(bits, offset))
    return jnp.where(first, public, 0).astype(dtype) - rc + carry * power_of_two(ring, k - 1 - bits)
