"""``semi2k``: additive secret sharing over Z_2^k among N >= 2 parties, with a dealer.

Security model: **semi-honest** (the parties follow the protocol), secure against any
coalition of up to N - 1 of the N computing parties, provided the **dealer** does not collude
with any of them. The dealer (a trusted third party, or a setup phase) only produces
correlated randomness: it shares a PRG seed with every party, so each party's share of a
dealer value is free; for values that depend on others (a Beaver product ``C = op(A, B)``, the
shifted mask of a truncation, arithmetic copies of random bits) it sends the last party a
correction, *before* and independently of any input (offline traffic, counted as ``dealer``
bytes, zero rounds). The dealer never receives anything and learns nothing about the inputs;
the parties see only values masked by the dealer's randomness.

A value ``x`` is held as ``x = x_0 + ... + x_{N-1} mod 2^k``; shares have layout
``(N, *shape)``. Binary (XOR) shares of a word pack k bits in one ring word.

Communication per party, for n elements of a k-bit ring (B = k / 8 bytes), one call:

=========================  ===============================  ========  ================
op                         bytes sent by each party         rounds    dealer (offline)
=========================  ===============================  ========  ================
share (owner)              N <= 3: 0; else owner (N-3) n B  0 / 1     0
reveal to all              (N-1) n B                        1         0
reveal to one party        n B (every other party)          1         0
bilinear ``C = op(A, B)``  (N-1)(|A| + |B|) B               1         |C| B
  elementwise mul          2 (N-1) n B                      1         n B
  m x m matmul             2 (N-1) m^2 B                    1         m^2 B
trunc                      (N-1) n B                        1         2 n B
msb (N = 2)                2 (n B + T) + ceil(n/8)          L + 2     2 n B + T
eqz (N = 2)                2 W + ceil(n/8)                  lg k + 1  W + n B
=========================  ===============================  ========  ================

with L = log2 k levels of the carry tree, T its narrowing AND words (k = 64:
2 (4 + 2 + 1 + 1 + 1) + 1 = 19 n bytes; k = 32: 2 (2 + 1 + 1 + 1) + 1 = 11 n) and W the AND
tree's narrowing words (k = 64: 4 + 2 + 1 + 1 + 1 + 1 = 10 n bytes; k = 32: 6 n); at k = 64
msb is 54 n + ceil(n/8) bytes in 8 rounds, eqz (N = 2) 20 n + ceil(n/8) bytes in 7 rounds.
For N parties every opening is sent to N - 1 others, and msb first reduces the N summands
to two with carry-save adders (ceil(log_{3/2}(N/2)) more rounds).

- **bilinear**: Beaver triples for any bilinear map: the dealer deals ``A``, ``B`` (free) and
  ``C = op(A, B)``; the parties open ``E = X - A`` and ``F = Y - B`` in one round and party i
  takes ``C_i + op(E, Y_i) + op(A_i, F)``. Exact in the ring.
- **trunc**: probabilistic truncation (:mod:`secjax.protocols.common`): for
  ``|x| < 2^(k-2)`` the result is ``floor(x / 2^d)`` or that plus one, with no chance of a
  larger error.
- **msb**: arithmetic-to-binary conversion (party i's share is a binary sharing it holds alone;
  carry-save adders reduce N summands to two, 1 round per layer, none for N = 2), the generate
  bits (1 round), the carry into the top bit by a narrowing tree (L rounds,
  :func:`secjax.protocols.binary.group_generate`), all on dealer AND
  triples (each AND word: every party opens 2 words), then bit-to-arithmetic conversion of the
  sign bit with a dealer bit ``r`` shared both ways: open ``b ^ r`` (bits packed eight to a
  byte, 1 round), ``b = c + r - 2 c r``. Exact.
- **eqz**: N = 2: ``x = 0`` iff ``x_0 = -x_1``, and ``x_0 ^ -x_1`` is already binary shared;
  N > 2: the parties open ``c = x + r`` for a dealer ``r`` whose bits are binary shared
  (1 round, (N-1) n B), ``x = 0`` iff ``c ^ r = 0``. Then an AND tree over the k bits of the
  complement (log2 k rounds, narrowing words) and B2A as for msb. Exact.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from secjax.protocols import binary, common
from secjax.protocols.base import Protocol, Steps


# -- opening -------------------------------------------------------------------------------
def _xor_all(x, axis):
    return functools.reduce(
        jnp.bitwise_xor, [jnp.take(x, i, axis=axis) for i in range(x.shape[axis])]
    )


def _open(comm, x, *, xor=False):
    """Every party learns the value that ``x`` shares (additively, or XOR with ``xor``)."""
    gathered = comm.all_gather(x)
    return _xor_all(gathered, 1) if xor else jnp.sum(gathered, axis=1, dtype=x.dtype)


def _open_views(comm, x, *, to):
    """Open ``x`` to every party (``to=None``) or to party ``to``; others' views are 0."""
    with comm.op("reveal"):
        if to is None:
            return _open(comm, x)
        total = x
        with comm.one_round():
            for src in range(comm.n_parties):
                if src != to:
                    total = total + comm.send(x, src, to)
        return common.at_party(comm, x, to, total)


def _reveal_step(comm, x, *, to):
    return comm.view(_open_views(comm, x, to=to), 0 if to is None else to)


# -- sharing -------------------------------------------------------------------------------
def _share_step(comm, x, *, owner):
    """Party ``owner`` shares ``x``: its two neighbours take PRG values it shares with them,
    any further party a random value it sends, and the owner keeps the difference."""
    n = comm.n_parties
    with comm.op("share"):
        full = comm.broadcast(x)
        with_next, with_prev = comm.random_pair(x.shape, x.dtype)
        idx = comm.party_index(full)
        nxt, prv = (owner + 1) % n, (owner - 1) % n
        shares = jnp.where(idx == nxt, with_prev, 0).astype(x.dtype)
        kept = full - with_next
        if prv != nxt:
            shares = jnp.where(idx == prv, with_next, shares)
            kept = kept - with_prev
        with comm.one_round():
            for dst in range(n):
                if dst not in (owner, nxt, prv):
                    mask = comm.random(x.shape, x.dtype)
                    shares = shares + comm.send(mask, owner, dst)
                    kept = kept - mask
        return jnp.where(idx == owner, kept, shares)


def _from_public_step(comm, x):
    full = comm.broadcast(x)
    return common.at_party(comm, full, 0, full)


# -- bilinear maps -------------------------------------------------------------------------
def _beaver(comm, x, y, op):
    a_val, a = comm.dealer_random_shares(x.shape[1:], x.dtype)
    b_val, b = comm.dealer_random_shares(y.shape[1:], y.dtype)
    c = comm.deal_shares(op(a_val, b_val))
    with comm.one_round():
        e = _open(comm, x - a)
        f = _open(comm, y - b)
    return c + jax.vmap(op)(e, y) + jax.vmap(op)(a, f)


def _bilinear_step(comm, x, y, *, op):
    with comm.op("bilinear"):
        return _beaver(comm, x, y, op)


# -- truncation ----------------------------------------------------------------------------
def _trunc_step(comm, x, *, bits, offset):
    ring = comm.ring
    with comm.op("trunc"):
        r_val, r = comm.dealer_random_shares(x.shape[1:], x.dtype)
        rc_val, rb_val = common.trunc_mask(ring, r_val, bits)
        rc, rb = comm.deal_shares(rc_val), comm.deal_shares(rb_val)
        first = comm.party_index(x) == 0
        shifted = jnp.where(first, common.trunc_offset(ring, x, offset), x)
        c = _open(comm, shifted + r)
        return common.trunc_finish(ring, c, rc, rb, bits, first, offset)


# -- binary circuits -----------------------------------------------------------------------
class _DealerAnd(binary.AndGates):
    """AND gates on XOR shares from dealer AND triples ``(a, b, a & b)``; the pairs of one
    call must have one shape and dtype."""

    def and_(self, comm, pairs):
        # One stacked triple for all pairs (same shape and dtype): fewer PRG draws to compile.
        x = jnp.stack([x for x, _ in pairs], axis=1)
        y = jnp.stack([y for _, y in pairs], axis=1)
        ab_val, ab = comm.dealer_random_shares((2, *x.shape[1:]), x.dtype, xor=True)
        a, b = ab[:, 0], ab[:, 1]
        c = comm.deal_shares(ab_val[0] & ab_val[1], xor=True)
        opened = _open(comm, jnp.stack([x ^ a, y ^ b], axis=1), xor=True)
        e, f = opened[:, 0], opened[:, 1]
        # XOR over parties: c ^ (e & y) ^ (a & f) = ab ^ eb ^ ef ^ af = (a ^ e) & (b ^ f)
        z = c ^ (e & y) ^ (a & f)
        return [z[:, i] for i in range(len(pairs))]

    def xor_public(self, comm, x, c):
        return x ^ common.at_party(comm, x, 0, c)


_GATES = _DealerAnd()


def _b2a_bit(comm, bit, bits=None):
    """Arithmetic shares (in the ring, or in ``Z_2^bits``) of the bit that the XOR shares
    ``bit`` (0/1 per share) hold."""
    dtype = np.dtype(f"uint{bits}") if bits else comm.ring.dtype
    shape = bit.shape[1:]
    r_val, r = comm.dealer_random_shares(shape, np.uint8, xor=True)
    r_arith = comm.deal_shares((r_val & 1).astype(dtype))
    masked = binary.pack_bits(bit.astype(np.uint8) ^ (r & 1))
    c = binary.unpack_bits(_open(comm, masked, xor=True), shape).astype(dtype)
    first = comm.party_index(c) == 0
    return jnp.where(first, c, 0).astype(dtype) + r_arith - 2 * c * r_arith


def _own_terms(comm, x):
    """Party i's share as a binary sharing that party i holds alone, for each i."""
    return [common.at_party(comm, x, i, x) for i in range(comm.n_parties)]


def _msb_step(comm, x):
    with comm.op("msb"):
        with comm.op("a2b"):
            bit = binary.msb_of_sum(comm, _GATES, _own_terms(comm, x), comm.ring.bits)
        with comm.op("b2a"):
            return _b2a_bit(comm, bit)


def _eqz_step(comm, x, *, width=None, out_bits=None):
    width = width or comm.ring.bits
    x = x.astype(binary.narrow_dtype(width))  # x mod 2^width, shared as it is
    with comm.op("eqz"):
        if comm.n_parties == 2:  # x = 0 iff x_0 ^ (-x_1) = 0, a binary sharing as it stands
            diff = jnp.where(comm.party_index(x) == 0, x, -x)
        else:  # open c = x + r, x = 0 iff c ^ r = 0
            r_val, r = comm.dealer_random_shares(x.shape[1:], x.dtype)
            r_bits = comm.deal_shares(r_val, xor=True)
            c = _open(comm, x + r)
            diff = _GATES.xor_public(comm, r_bits, c)
        bit = binary.is_zero(comm, _GATES, diff, width)
        with comm.op("b2a"):
            return _b2a_bit(comm, bit, out_bits)


class Semi2k(Protocol):
    """Additive sharing among N >= 2 semi-honest parties with a dealer (see module doc)."""

    name = "semi2k"
    share_axes = 1

    def __init__(self, ring, n_parties, runtime):
        if n_parties < 2:
            raise ValueError(f"semi2k needs at least 2 parties, got {n_parties}")
        super().__init__(ring, n_parties, runtime)

    steps = Steps(
        share=_share_step,
        reveal=_reveal_step,
        from_public=_from_public_step,
        bilinear=_bilinear_step,
        trunc=_trunc_step,
        msb=_msb_step,
        eqz=_eqz_step,
    )
