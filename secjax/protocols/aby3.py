"""``aby3``: 2-out-of-3 replicated secret sharing over Z_2^k (Mohassel–Rindal, ABY3, 2018).

Security model: **semi-honest, honest majority** of exactly 3 parties: any single party
learns nothing; two colluding parties learn everything. There is no dealer: all correlated
randomness comes from the pairwise PRG seeds (``comm.random_pair``), and where a protocol
needs a helper (truncation) the third party plays it without seeing any opened value.

``x = x_0 + x_1 + x_2 mod 2^k`` and party i holds ``(x_i, x_{i+1})``: shares have layout
``(3, 2, *shape)``. Binary (XOR) sharings use the same layout with ``^`` for ``+``, k bits
packed per word.

Communication per party (P0 / P1 / P2 where they differ), n elements, B = k / 8 bytes:

=========================  =================================  ==========
op                         bytes sent by each party           rounds
=========================  =================================  ==========
share (owner o)            owner n B, others 0                1
reveal to all              n B                                1
reveal to party j          party j-1: n B, others 0           1
bilinear ``C = op(A, B)``  |C| B (a re-sharing of C)          1
  elementwise mul          n B                                1
  m x m matmul             m^2 B                              1
trunc                      2 n B each                         2
msb                        P0 4 n B + T,                      L + 4
                           P1, P2 2 n B + T
eqz                        P0 n B + W + 2 n B,                log2 k + 3
                           P1, P2 W + n B
=========================  =================================  ==========

with L = log2 k levels of the carry tree, T its narrowing AND words (k = 64:
2 (4 + 2 + 1 + 1 + 1) + 1 = 19 n bytes) and W the AND tree's narrowing words (k = 64:
4 + 2 + 1 + 1 + 1 + 1 = 10 n bytes; k = 32: 6 n): at k = 64, msb sends 51 n (P0) and 35 n
(P1, P2) bytes in 10 rounds (a Kogge–Stone prefix instead: 120 n and 104 n); eqz 34 n (P0)
and 18 n bytes in 9 rounds.

- **bilinear**: party i computes ``t_i = op(x_i, y_i + y_{i+1}) + op(x_{i+1}, y_i) + alpha_i``
  with ``alpha_i = r_{i,i+1} - r_{i-1,i}`` a PRG zero sharing, and sends ``t_i`` to party
  i - 1 (one ``shift``). Exact.
- **trunc**: the probabilistic truncation of :mod:`secjax.protocols.common` run by P0 and P1
  on the 2-out-of-2 sharing ``(x_0 + x_1, x_2)``, with P2 as the helper that draws the mask
  ``r`` from its PRG seeds with P0 and P1 and sends P1 the corrections for ``r' >> d`` and
  ``msb(r)`` (round 1, with P0 and P1 exchanging ``x + r`` shares); the 2-out-of-2 result is
  turned back into a replicated sharing (round 2: P0 and P1 exchange their shares masked by
  PRG values they share with P2). For ``|x| < 2^(k-2)`` the result is ``floor(x / 2^d)`` or
  that plus one, with no chance of a larger error. P2 never sees ``c``.
- **msb**: P0 holds ``x_0 + x_1`` and binary-shares it (1 round, P0 only); with ``x_2``
  (a binary sharing P1 and P2 hold as it stands) the generate bits and a narrowing carry
  tree give the sign bit (1 + L rounds of replicated ANDs, one word each per AND word,
  :func:`secjax.protocols.binary.group_generate`); then B2A of the
  bit ``b = b_0 ^ b_1 ^ b_2``: P0 arithmetic-shares ``u = b_0 ^ b_1`` (1 round, P0 only),
  and ``b = u + b_2 - 2 u b_2`` with one multiplication (1 round). Exact.
- **eqz**: ``x = 0`` iff ``x_0 + x_1 = -x_2``: P0 binary-shares ``x_0 + x_1`` (1 round), an
  AND tree over the k bits of the complement of the XOR (log2 k rounds, words narrowing
  4 + 2 + 1 + 1 + 1 + 1 bytes at k = 64), then B2A as for msb. Exact.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from secjax.protocols import binary, common
from secjax.protocols.ideal import additive_sharing, ideal_steps
from secjax.protocols.base import Protocol, Steps


def _stack(first, second):
    return jnp.stack([first, second], axis=1)


def _input(comm, v, owner, *, xor=False):
    """Party ``owner``'s value ``v`` (party-indexed, meaningful at the owner) as a fresh
    replicated sharing: ``x_{o+1} = s`` (a PRG value of o and o+1), ``x_o = v - s`` (sent to
    o - 1), ``x_{o-1} = 0``. One message of |v| from the owner."""
    with_next, with_prev = comm.random_pair(v.shape[1:], v.dtype)
    idx = comm.party_index(v)
    nxt, prv = (owner + 1) % 3, (owner - 1) % 3
    s = jnp.where(idx == owner, with_next, with_prev)
    masked = (v ^ s) if xor else (v - s)
    received = comm.send(masked, owner, prv)
    zero = jnp.zeros_like(v)
    first = jnp.where(idx == owner, masked, jnp.where(idx == nxt, s, zero))
    second = jnp.where(idx == owner, s, jnp.where(idx == prv, received, zero))
    return _stack(first, second)


def _at_component(comm, value, j):
    """The sharing whose component ``j`` is ``value`` (known to parties j and j-1), others 0:
    ``value`` must be meaningful at both holders."""
    idx = comm.party_index(value)
    zero = jnp.zeros_like(value)
    return _stack(jnp.where(idx == j, value, zero), jnp.where(idx == (j - 1) % 3, value, zero))


def _reshare(comm, t):
    """From 3-out-of-3 shares ``t_i`` (already zero-masked) to replicated: party i + 1 sends
    ``t_{i+1}`` to party i."""
    return _stack(t, comm.shift(t, -1))


# -- sharing and opening -------------------------------------------------------------------
def _share_step(comm, x, *, owner):
    with comm.op("share"):
        return _input(comm, comm.broadcast(x), owner)


def _from_public_step(comm, x):
    return _at_component(comm, comm.broadcast(x), 0)


def _open_views(comm, x, *, to):
    """Open ``x`` to every party (``to=None``) or to party ``to``; others' views are 0."""
    with comm.op("reveal"):
        if to is None:
            missing = comm.shift(x[:, 0], 1)  # party i gets x_{i-1} from party i - 1
            return x[:, 0] + x[:, 1] + missing
        missing = comm.send(x[:, 0], (to - 1) % 3, to)
        return common.at_party(comm, missing, to, x[:, 0] + x[:, 1] + missing)


def _reveal_step(comm, x, *, to):
    return comm.view(_open_views(comm, x, to=to), 0 if to is None else to)


# -- bilinear maps -------------------------------------------------------------------------
def _cross_terms(comm, x, y, op):
    vop = jax.vmap(op)
    t = vop(x[:, 0], y[:, 0] + y[:, 1]) + vop(x[:, 1], y[:, 0])
    with_next, with_prev = comm.random_pair(t.shape[1:], t.dtype)
    return _reshare(comm, t + with_next - with_prev)


def _bilinear_step(comm, x, y, *, op):
    with comm.op("bilinear"):
        return _cross_terms(comm, x, y, op)


# -- truncation ----------------------------------------------------------------------------
def _trunc_step(comm, x, *, bits):
    ring = comm.ring
    shape = x.shape[2:]
    with comm.op("trunc"):
        idx = comm.party_index(x[:, 0])
        p0, p1 = idx == 0, idx == 1
        # 2-out-of-2 between P0 (x_0 + x_1, plus the offset) and P1 (x_2).
        two = jnp.where(p0, common.trunc_offset(ring, x[:, 0] + x[:, 1]),
                        jnp.where(p1, x[:, 1], 0)).astype(ring.dtype)
        # P2's mask r = r_0 + r_1: r_0 from its seed with P0, r_1 from its seed with P1.
        nxt, prv = comm.random_pair(shape, ring.dtype)
        r_share = jnp.where(p0, prv, jnp.where(p1, nxt, 0)).astype(ring.dtype)
        r = nxt + prv                                  # meaningful at P2
        rc_val, rb_val = common.trunc_mask(ring, r, bits)
        # P0's shares of (rc, rb) from its seed with P2; P2 sends P1 the rest.
        nxt2, prv2 = comm.random_pair((2, *shape), ring.dtype)
        corrections = jnp.where((idx == 2)[:, None], jnp.stack([rc_val, rb_val], axis=1) - nxt2,
                                0).astype(ring.dtype)
        masked = two + r_share
        with comm.one_round():
            got = comm.send(corrections, 2, 1)
            from0 = comm.send(masked, 0, 1)
            from1 = comm.send(masked, 1, 0)
        mine = jnp.where(p0[:, None], prv2, got)   # meaningful at P0 and P1
        c = masked + from0 + from1
        y = common.trunc_finish(ring, c, mine[:, 0], mine[:, 1], bits, p0)
        # Back to replicated: z_0 = s02, z_2 = s12, z_1 = (y_0 - s02) + (y_1 - s12).
        nxt3, prv3 = comm.random_pair(shape, ring.dtype)
        s = jnp.where(p0, prv3, nxt3)    # P0: s02, P1: s12
        with comm.one_round():
            t = y - s
            z1 = t + comm.send(t, 0, 1) + comm.send(t, 1, 0)
        first = jnp.where(p1, z1, prv3)      # P0: s02, P2: s12
        second = jnp.where(p0, z1, nxt3)     # P1: s12, P2: s02
        return _stack(first, second)


# -- binary circuits -----------------------------------------------------------------------
class _ReplicatedAnd(binary.AndGates):
    """AND gates on replicated XOR shares: cross terms, a PRG zero sharing, one re-share."""

    def and_(self, comm, pairs):
        # All pairs (same shape and dtype) stacked: one zero sharing, one message.
        x = jnp.stack([x for x, _ in pairs], axis=2)
        y = jnp.stack([y for _, y in pairs], axis=2)
        t = (x[:, 0] & (y[:, 0] ^ y[:, 1])) ^ (x[:, 1] & y[:, 0])
        with_next, with_prev = comm.random_pair(t.shape[1:], t.dtype)
        z = _reshare(comm, t ^ with_next ^ with_prev)
        return [z[:, :, i] for i in range(len(pairs))]

    def xor_public(self, comm, x, c):
        return x ^ _at_component(comm, jnp.broadcast_to(c, x[:, 0].shape).astype(x.dtype), 0)


_GATES = _ReplicatedAnd()


def _b2a_bit(comm, bit):
    """Arithmetic shares of the bit ``b_0 ^ b_1 ^ b_2`` held in replicated XOR shares."""
    dtype = comm.ring.dtype
    bit = bit.astype(dtype) & 1
    u = _input(comm, bit[:, 0] ^ bit[:, 1], 0)          # b_0 ^ b_1, known to P0
    b2 = _component2(comm, bit[:, 1], bit[:, 0])        # b_2: P1's second, P2's first
    product = _cross_terms(comm, u, b2, jnp.multiply)
    return u + b2 - 2 * product


def _split_terms(comm, x):
    """``x_0 + x_1`` binary-shared by P0 (1 round) and ``x_2`` as it stands."""
    left = _input(comm, x[:, 0] + x[:, 1], 0, xor=True)
    return left, x[:, 1], x[:, 0]


def _msb_step(comm, x):
    k = comm.ring.bits
    with comm.op("msb"):
        with comm.op("a2b"):
            left, p1_x2, p2_x2 = _split_terms(comm, x)
            right = _component2(comm, p1_x2, p2_x2)
            bit = binary.msb_of_sum(comm, _GATES, [left, right], k)
        with comm.op("b2a"):
            return _b2a_bit(comm, bit)


def _component2(comm, at_p1, at_p2):
    """The sharing whose component 2 is the value P1 has in ``at_p1`` and P2 in ``at_p2``."""
    idx = comm.party_index(at_p1)
    zero = jnp.zeros_like(at_p1)
    return _stack(jnp.where(idx == 2, at_p2, zero), jnp.where(idx == 1, at_p1, zero))


def _eqz_step(comm, x):
    ring = comm.ring
    with comm.op("eqz"):
        left, p1_x2, p2_x2 = _split_terms(comm, x)
        diff = left ^ _component2(comm, -p1_x2, -p2_x2)   # 0 iff x_0 + x_1 = -x_2
        bit = binary.is_zero(comm, _GATES, diff, ring.bits)
        with comm.op("b2a"):
            return _b2a_bit(comm, bit)


def _combine(comm, x):
    return comm.total(x[:, 0])


def _deal(comm, value):
    return _reshare(comm, additive_sharing(comm, value))


class Aby3(Protocol):
    """2-out-of-3 replicated sharing among exactly 3 semi-honest parties (see module doc)."""

    name = "aby3"
    share_axes = 2

    def __init__(self, ring, n_parties, runtime):
        if n_parties != 3:
            raise ValueError(f"aby3 is a protocol for exactly 3 parties, got {n_parties}")
        super().__init__(ring, n_parties, runtime)

    steps = Steps.of_module(__name__)
    ideal = ideal_steps(_combine, _deal)
