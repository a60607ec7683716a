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
trunc                      2 n B - (B - B') n/3               2
bilinear, truncated        2 n B - (B - B') n/3 + n/24        3
msb                        2 n B + T + 2 B n/3                L + 4
eqz                        n B + W + 2 B n/3                  log2 k + 3
=========================  =================================  ==========

with B' the bytes of the narrowest unsigned dtype of d + 1 bits (d = 18: B' = 4, so trunc
sends 14.7 n bytes per party, and a truncated product the same plus its packed top bits,
instead of 8 n + 14.7 n for a product and then a truncation), L = log2 k levels of the carry
tree, T its narrowing AND words (k = 64: 2 (4 + 2 + 1 + 1 + 1) + 1 = 19 n bytes) and W the
AND tree's narrowing words (k = 64: 4 + 2 + 1 + 1 + 1 + 1 = 10 n bytes; k = 32: 6 n): at
k = 64, msb sends 40.3 n bytes per party in 10 rounds (with a Kogge–Stone prefix and one
lead party for all elements: 120 n and 104 n); eqz 23.3 n in 9 rounds.

- **bilinear**: party i computes ``t_i = op(x_i, y_i + y_{i+1}) + op(x_{i+1}, y_i) + alpha_i``
  with ``alpha_i = r_{i,i+1} - r_{i-1,i}`` a PRG zero sharing, and sends ``t_i`` to party
  i - 1 (one ``shift``). Exact.
- **trunc**: the probabilistic truncation of :mod:`secjax.protocols.common` run by two
  parties on the 2-out-of-2 sharing ``(x_j + x_{j+1}, x_{j+2})``, with the third as the
  helper that draws the mask ``r`` from its PRG seeds with the other two and sends one of
  them the corrections for ``r' >> d`` (B bytes) and ``msb(r)`` (B' bytes: it counts only
  times ``2^(k-1-d)``) in round 1, while the two exchange their ``x + r`` shares; the
  2-out-of-2 result is turned back into a replicated sharing (round 2: the two exchange
  their shares masked by PRG values they share with the helper). The roles rotate over
  thirds of the elements (offset j = 0, 1, 2), so each party sends 14.7 n bytes at k = 64,
  d = 18. For ``|x| < 2^(k-2)`` the result is ``floor(x / 2^d)`` or that plus one, with no
  chance of a larger error. The helper never sees ``c``.
- **bilinear, truncated** (``bilinear(..., trunc_bits=d)``): the same truncation fed
  directly by the product's zero-masked 3-out-of-3 shares ``t_i``, which are never re-shared
  (two steps: ``product`` computes the ``t_i`` locally, ``trunc_product`` truncates them).
  Per third, round 1: the helper sends role 0 its ``t`` and role 1 the corrections, role 1
  sends role 0 ``t + r_1``, so role 0 alone holds ``c``; round 2: role 0 sends role 1 the top
  bit of ``c`` (all of ``c`` that role 1's result needs; packed eight to a byte) and its masked
  result; round 3: role 1 answers with its own. Role 0 sees ``t_2`` masked by the zero sharing
  and ``t_1 + r_1`` masked by ``r_1``; role 1 sees a uniform bit of the uniform ``c``.
- **msb**: each third of the elements has a lead party j = 0, 1, 2 (so all send alike). The
  lead holds ``x_j + x_{j+1}`` and binary-shares it (1 round for the three leads); with
  ``x_{j+2}`` (a binary sharing P_{j+1} and P_{j+2} hold as it stands) the generate bits and
  a narrowing carry tree give the sign bit (1 + L rounds of replicated ANDs, one word each
  per AND word, :func:`secjax.protocols.binary.group_generate`); then B2A of the bit
  ``b = b_0 ^ b_1 ^ b_2``: the lead arithmetic-shares ``u = b_j ^ b_{j+1}`` (1 round), and
  ``b = u + b_{j+2} - 2 u b_{j+2}`` with one multiplication (1 round). Exact.
- **eqz**: ``x = 0`` iff ``x_j + x_{j+1} = -x_{j+2}``: the lead binary-shares
  ``x_j + x_{j+1}`` (1 round), an AND tree over the k bits of the complement of the XOR
  (log2 k rounds, words narrowing 4 + 2 + 1 + 1 + 1 + 1 bytes at k = 64), then B2A as for
  msb. Exact. With ``width=w`` (values known below 2^w) everything before the B2A works on
  ``x mod 2^w`` in w-bit words: w = 16 sends 15.3 n bytes in 7 rounds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from secjax.protocols import binary, common
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
def _masked_cross_terms(comm, x, y, op):
    """Party i's ``op(x_i, y_i + y_{i+1}) + op(x_{i+1}, y_i)`` plus its part of a PRG zero
    sharing: 3-out-of-3 shares of ``op(x, y)``, each uniform on its own."""
    vop = jax.vmap(op)
    t = vop(x[:, 0], y[:, 0] + y[:, 1]) + vop(x[:, 1], y[:, 0])
    with_next, with_prev = comm.random_pair(t.shape[1:], t.dtype)
    return t + with_next - with_prev


def _cross_terms(comm, x, y, op):
    return _reshare(comm, _masked_cross_terms(comm, x, y, op))


def _bilinear_step(comm, x, y, *, op):
    with comm.op("bilinear"):
        return _cross_terms(comm, x, y, op)


# -- truncation ----------------------------------------------------------------------------
# Roles rotate over thirds of the elements as in msb (see _thirds below): in the third with
# offset j, party j + r plays role r of the protocol (roles 0 and 1 hold the 2-out-of-2
# sharing, role 2 is the helper), so every party sends alike.
def _roles(comm, like, j):
    """Each party's role in the third with offset ``j``, and the parties of roles 0, 1, 2."""
    return (comm.party_index(like) - j) % 3, j, (1 + j) % 3, (2 + j) % 3


def _dealt_mask(comm, like, bits, j):
    """The helper's mask ``r = r_0 + r_1`` (role r's part from its seed with the helper) and
    roles 0 and 1's shares of ``r' >> d`` and ``msb(r)``: role 0's from its seed with the
    helper, role 1's sent by the helper in this round (``msb(r)`` counts only times
    ``2^(k-1-d)``, so its share travels in ``bits + 1`` bits). ``like``: a party-indexed
    array of the third's shape. Returns ``(r_part, rc, rb)``."""
    ring = comm.ring
    shape = like.shape[1:]
    role, _, second, helper = _roles(comm, like, j)
    r0 = role == 0
    nxt, prv = comm.random_pair(shape, ring.dtype)
    r_part = jnp.where(r0, prv, jnp.where(role == 1, nxt, 0)).astype(ring.dtype)
    rc_val, rb_val = common.trunc_mask(ring, nxt + prv, bits)  # meaningful at the helper
    nxt2, prv2 = comm.random_pair((2, *shape), ring.dtype)
    got_rc = comm.send(rc_val - nxt2[:, 0], helper, second)
    got_rb = comm.send((rb_val - nxt2[:, 1]).astype(_carry_dtype(ring, bits)), helper, second)
    rc = jnp.where(r0, prv2[:, 0], got_rc)
    rb = jnp.where(r0, prv2[:, 1], got_rb.astype(ring.dtype))
    return r_part, rc, rb


def _trunc_open(comm, x, bits, offset, j):
    """Round 1 for the third with role offset ``j``: the 2-out-of-2 shares of the truncated
    value (held by roles 0 and 1) and each party's role."""
    ring = comm.ring
    role, first, second, _ = _roles(comm, x[:, 0], j)
    r0 = role == 0
    # 2-out-of-2 between role 0 (x_j + x_{j+1}, plus the offset) and role 1 (x_{j+2}).
    two = jnp.where(
        r0, common.trunc_offset(ring, x[:, 0] + x[:, 1], offset), jnp.where(role == 1, x[:, 1], 0)
    ).astype(ring.dtype)
    r_part, rc, rb = _dealt_mask(comm, x[:, 0], bits, j)
    c = _exchanged_sum(comm, two + r_part, first, second)
    return common.trunc_finish(ring, c, rc, rb, bits, r0, offset), role


def _to_replicated(comm, y, role, j):
    """The 2-out-of-2 result ``y`` (roles 0 and 1) as replicated shares: z_j = s(0,2) and
    z_{j+2} = s(1,2) from PRG seeds, z_{j+1} = (y_0 - s(0,2)) + (y_1 - s(1,2)). Returns the
    masked ``y`` each role sends the other, and the sharing given the sum of both."""
    nxt, prv = comm.random_pair(y.shape[1:], y.dtype)
    masked = y - jnp.where(role == 0, prv, nxt)

    def sharing(z1):
        return _stack(jnp.where(role == 1, z1, prv), jnp.where(role == 0, z1, nxt))

    return masked, sharing


def _trunc_reshare(comm, y, role, j):
    """Round 2: roles 0 and 1 exchange their masked results."""
    masked, sharing = _to_replicated(comm, y, role, j)
    return sharing(_exchanged_sum(comm, masked, j, (1 + j) % 3))


def _exchanged_sum(comm, v, a, b):
    """Parties ``a`` and ``b`` swap their ``v`` and each holds the sum of both."""
    return v + comm.send(v, a, b) + comm.send(v, b, a)


def _carry_dtype(ring, bits):
    """The dtype that ``msb(r)``'s share travels in: ``bits + 1`` bits are all that count.
    A shift passed at run time (an emulator kernel serving every amount) sends a whole ring
    word: the result is the same, and the emulator's cost comes from a trace at the real
    amount."""
    return _narrow_dtype(ring, bits + 1) if isinstance(bits, int) else ring.dtype


def _narrow_dtype(ring, bits: int):
    """The narrowest unsigned dtype of at least ``bits`` bits (at most the ring's)."""
    width = next(w for w in (8, 16, 32, 64) if w >= min(bits, ring.bits))
    return jnp.dtype(f"uint{width}")


def _trunc_step(comm, x, *, bits, offset):
    with comm.op("trunc"):
        flat = _flat(x)
        thirds = _thirds(flat.shape[-1])
        with comm.one_round():
            opened = [_trunc_open(comm, flat[..., lo:hi], bits, offset, j) for j, lo, hi in thirds]
        with comm.one_round():
            parts = [
                _trunc_reshare(comm, y, role, j) for (y, role), (j, _, _) in zip(opened, thirds)
            ]
        return jnp.concatenate(parts, axis=-1).reshape(x.shape)


# -- a product truncated in the same step --------------------------------------------------
# The product's 3-out-of-3 shares go straight into the truncation, with no re-sharing
# between. Per third (roles as above), round 1: the helper and role 1 send role 0 their
# shares (role 1's masked by its part of r), so role 0 alone learns c = x + 2^(k-2) + r,
# while the helper sends role 1 its corrections; round 2: role 0 sends role 1 the top bit of
# c (all that role 1's result needs of c, eight to a byte) and its masked result; round 3:
# role 1 answers with its masked result.
def _product_open(comm, t, bits, offset, j):
    """Round 1: role 0's ``c``, roles 0 and 1's shares of the mask's corrections."""
    ring = comm.ring
    _, first, second, helper = _roles(comm, t, j)
    r_part, rc, rb = _dealt_mask(comm, t, bits, j)
    with comm.op("bilinear"):
        c = (
            common.trunc_offset(ring, t + r_part, offset)
            + comm.send(t, helper, first)
            + comm.send(t + r_part, second, first)
        )
    return c, rc, rb


def _product_result(comm, c, rc, rb, bits, offset, j):
    """Round 2: role 1 gets the top bit of c; both compute their results and role 0 sends
    its masked one. Returns the masked result, what role 1 received, and the sharing."""
    ring = comm.ring
    k = ring.bits
    role, first, second, _ = _roles(comm, c, j)
    top = (c >> (k - 1)).astype(jnp.uint8)
    got = comm.send(jnp.packbits(top, axis=-1), first, second)
    top_at_second = jnp.unpackbits(got, axis=-1, count=c.shape[-1]).astype(ring.dtype)
    c_view = jnp.where(role == 0, c, top_at_second << (k - 1))
    y = common.trunc_finish(ring, c_view, rc, rb, bits, role == 0, offset)
    masked, sharing = _to_replicated(comm, y, role, j)
    return masked, comm.send(masked, first, second), sharing


def _private_product_step(comm, x, y, *, op, owner, private_first):
    """``op(x, y)`` (or ``op(y, x)``) for ``x`` held in the clear by party o = ``owner``, as
    zero-masked 3-out-of-3 shares (layout ``(3, *shape)``). The owner splits
    ``x = x_a + x_b``: ``x_a`` from its PRG seed with o + 1, ``x_b`` sent to o - 1 (the
    replicated sharing of :func:`_input`, whose third component is zero). Then the owner
    computes ``op(x, y_o + y_{o+1})``, o + 1 ``op(x_a, y_{o+2})`` and o - 1
    ``op(x_b, y_{o+2})``: three local products where a secret product takes six. Each of o + 1
    and o - 1 sees one uniform half of ``x``."""
    nxt, prv = (owner + 1) % 3, (owner - 1) % 3
    with comm.op("share"):
        v = comm.broadcast(x)
        with_next, with_prev = comm.random_pair(x.shape, x.dtype)
        idx = comm.party_index(v)
        x_a = jnp.where(idx == owner, with_next, with_prev)  # the owner's and o + 1's
        x_b = comm.send(v - x_a, owner, prv)
    held = jnp.where(idx == owner, v, jnp.where(idx == nxt, x_a, x_b))
    y_idx = comm.party_index(y[:, 0])
    other = jnp.where(
        y_idx == owner, y[:, 0] + y[:, 1], jnp.where(y_idx == nxt, y[:, 1], y[:, 0])
    )  # y_{o+2} at o +- 1
    vop = jax.vmap(op)
    t = vop(held, other) if private_first else vop(other, held)
    with_next, with_prev = comm.random_pair(t.shape[1:], t.dtype)
    return t + with_next - with_prev


def _reshare_step(comm, t):
    """Replicated shares of the zero-masked 3-out-of-3 ``t`` (one re-sharing message)."""
    with comm.op("bilinear"):
        return _reshare(comm, t)


def _product_step(comm, x, y, *, op):
    """The product's zero-masked 3-out-of-3 shares, layout ``(3, *shape)``: no messages."""
    return _masked_cross_terms(comm, x, y, op)


def _trunc_product_step(comm, masked_product, *, bits, offset):
    t = masked_product.reshape(masked_product.shape[0], -1)
    thirds = _thirds(t.shape[-1])
    with comm.op("trunc"):
        with comm.one_round():
            opened = [_product_open(comm, t[:, lo:hi], bits, offset, j) for j, lo, hi in thirds]
        with comm.one_round():
            results = [
                _product_result(comm, *o, bits, offset, j) for o, (j, _, _) in zip(opened, thirds)
            ]
        with comm.one_round():
            parts = [
                sharing(masked + got + comm.send(masked, (1 + j) % 3, j))
                for (masked, got, sharing), (j, _, _) in zip(results, thirds)
            ]
    return jnp.concatenate(parts, axis=-1).reshape(
        masked_product.shape[0], 2, *masked_product.shape[1:]
    )


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


# -- comparisons: the lead party's role rotates over thirds of the elements ----------------
# In msb and eqz one party (the lead) binary-shares the sum of its two components and, in
# B2A, the XOR of its two bit components: words only the lead sends. Each third of the
# elements has its own lead, P0, P1, P2, so the parties send equal amounts (the messages of
# the three leads go in one round).


def _thirds(n: int) -> list[tuple[int, int, int]]:
    """(lead, start, stop) of the non-empty thirds of ``n`` flattened elements."""
    bounds = [n * j // 3 for j in range(4)]
    return [(j, bounds[j], bounds[j + 1]) for j in range(3) if bounds[j + 1] > bounds[j]]


def _lead_split(comm, x, *, xor):
    """Two sharings from the replicated sharing ``x`` (elements flattened): per third with
    lead j, P_j's own combination of ``x_j`` and ``x_{j+1}`` freshly shared (1 round for all
    thirds), and ``x_{j+2}`` as it stands (component j + 2 only). ``xor=False``: x is an
    arithmetic sharing, the lead's sum is shared as XOR shares (its bits, for a binary
    circuit); ``xor=True``: x holds XOR shares of bits, the lead's XOR is shared
    arithmetically (for B2A)."""
    idx = comm.party_index(x[:, 0])
    leads, rests = [], []
    with comm.one_round():
        for j, lo, hi in _thirds(x.shape[-1]):
            part = x[..., lo:hi]
            own = (part[:, 0] ^ part[:, 1]) if xor else (part[:, 0] + part[:, 1])
            leads.append(_input(comm, own, j, xor=not xor))
            last = (j + 2) % 3  # held as first component by P_{j+2}, second by P_{j+1}
            rests.append(_at_component(comm, jnp.where(idx == last, part[:, 0], part[:, 1]), last))
    return jnp.concatenate(leads, axis=-1), jnp.concatenate(rests, axis=-1)


def _b2a_bit(comm, bit, bits=None):
    """Arithmetic shares (in the ring, or in ``Z_2^bits``) of the bit ``b_0 ^ b_1 ^ b_2`` held
    in replicated XOR shares (flattened): ``b = u + w - 2 u w`` with u the lead's XOR, w the
    third component."""
    bit = bit.astype(f"uint{bits}" if bits else comm.ring.dtype) & 1
    u, w = _lead_split(comm, bit, xor=True)
    return u + w - 2 * _cross_terms(comm, u, w, jnp.multiply)


def _flat(x):
    return x.reshape(*x.shape[:2], -1)


def _msb_step(comm, x):
    k = comm.ring.bits
    with comm.op("msb"):
        with comm.op("a2b"):
            left, right = _lead_split(comm, _flat(x), xor=False)
            # XOR sharings of the two summands (x_{j+2}, one component, is one as it stands)
            bit = binary.msb_of_sum(comm, _GATES, [left, right], k)
        with comm.op("b2a"):
            return _b2a_bit(comm, bit).reshape(x.shape)


def _eqz_step(comm, x, *, width=None, out_bits=None):
    width = width or comm.ring.bits
    with comm.op("eqz"):
        low = _flat(x).astype(binary.narrow_dtype(width))  # x mod 2^width, shared as it is
        left, right = _lead_split(comm, low, xor=False)
        diff = left ^ -right  # 0 iff x_j + x_{j+1} = -x_{j+2} (mod 2^width)
        bit = binary.is_zero(comm, _GATES, diff, width)
        with comm.op("b2a"):
            return _b2a_bit(comm, bit, out_bits).reshape(x.shape)


class Aby3(Protocol):
    """2-out-of-3 replicated sharing among exactly 3 semi-honest parties (see module doc)."""

    name = "aby3"
    share_axes = 2

    def __init__(self, ring, n_parties, runtime):
        if n_parties != 3:
            raise ValueError(f"aby3 is a protocol for exactly 3 parties, got {n_parties}")
        super().__init__(ring, n_parties, runtime)

    steps = Steps(
        share=_share_step,
        reveal=_reveal_step,
        from_public=_from_public_step,
        bilinear=_bilinear_step,
        trunc=_trunc_step,
        msb=_msb_step,
        eqz=_eqz_step,
        product=_product_step,
        trunc_product=_trunc_product_step,
        private_product=_private_product_step,
        reshare=_reshare_step,
    )

    def share_shape(self, shape):
        return (3, 2, *shape)

    def product_shape(self, shape):
        return (3, *shape)

    def value_of(self, shares, *, product: bool = False):
        """``x_0 + x_1 + x_2``: the first component of every party's pair (the product
        layout holds one 3-out-of-3 share per party)."""
        if product:
            return super().value_of(shares, product=True)
        return super().value_of(np.asarray(shares)[:, 0])
