"""Binary (XOR) sharing circuits that semi2k and aby3 share.

Binary shares are packed: the k bits of a ring element's binary sharing live in one word of
the ring's dtype (``uint64`` / ``uint32``), so one AND gate on a word is k bitwise ANDs. The
circuits below are written once over an :class:`AndGates` object, the protocol's own way of
computing ANDs of shared words (dealer AND triples in semi2k, replicated cross terms in aby3)
and of XOR-ing in a public word. Everything else on binary shares is local for every layout
of shares: XOR of two sharings, shifts and masks apply share by share.

Costs are given in *AND words*: one AND of two shared words of a given dtype, all the ANDs
handed to one ``and_`` call running in one round.

- :func:`group_generate` (carry out of a k-bit sum, a tree over bit-reversed words):
  log2 k rounds, 2 AND words per level except the last (1), each narrowed to the groups
  still in play (64-bit: 2 (4 + 2 + 1 + 1 + 1) + 1 = 19 bytes per element).
- :func:`csa_reduce` (carry-save adders, 3 terms -> 2): one round per layer, 1 AND word per
  adder (majority(a, b, c) = ((a ^ c) & (b ^ c)) ^ c).
- :func:`msb_of_sum`: the sign bit of a sum of binary-shared words: csa layers, 1 round for
  the generate bits a & b, then the carry tree.
- :func:`all_ones`: AND of all k bits of a word by halving: log2 k rounds, each AND word
  narrowed to the bits still in play (64-bit: 4 + 2 + 1 + 1 + 1 + 1 = 10 bytes per element,
  32-bit: 2 + 1 + 1 + 1 + 1 = 6).
"""

from __future__ import annotations

import abc
import math

import jax.numpy as jnp
import numpy as np


class AndGates(abc.ABC):
    """How a protocol computes ANDs of binary-shared words."""

    @abc.abstractmethod
    def and_(self, comm, pairs):
        """Shares of ``x & y`` for every ``(x, y)`` in ``pairs`` (one shape and dtype), all in
        one round."""

    @abc.abstractmethod
    def xor_public(self, comm, x, c):
        """Shares of ``x ^ c`` for a public word ``c`` (local)."""


def reverse_bit_indices(x, bits: int):
    """Each word of ``x`` (``bits`` = its dtype's width, a power of two) with bit q moved to
    position rev(q), rev reversing q's log2(bits)-bit binary index (the FFT's bit-reversal
    permutation), as one delta swap per pair of index bits. A bit permutation, so it applies
    share by share to XOR sharings."""
    levels = bits.bit_length() - 1
    for i in range(levels // 2):
        j = levels - 1 - i
        lower = sum(1 << q for q in range(bits) if (q >> i) & 1 and not (q >> j) & 1)
        delta = (1 << j) - (1 << i)
        t = (x ^ (x >> delta)) & jnp.asarray(lower, x.dtype)
        x = x ^ t ^ (t << delta)
    return x


def group_generate(comm, gates: AndGates, g, p, bits: int):
    """Shares (bit 0, dtype uint8) of the carry out of a ``bits``-bit sum (``bits`` a power
    of two) whose bitwise generate and propagate words are ``g`` (= a & b) and ``p`` (= a ^ b).

    A tree of the carry operator ``(G, P) o (G', P') = (G ^ (P & G'), P & P')`` (G and P are
    never both 1, so ``|`` is ``^``, linear in XOR shares). In bit-reversed order the
    neighbours 2j and 2j + 1 sit at q and q + bits/2, and pair j lands at q again, so every
    level combines a word's upper half (the more significant groups) with its lower half and
    keeps the result only as wide as the groups still in play: per element the levels send
    AND words of 4 + 2 + 1 + 1 + 1 bytes (two each) and 1 byte (generate only) at k = 64,
    19 bytes against 104 of a Kogge-Stone prefix, in the same log2(k) rounds.
    """
    g, p = reverse_bit_indices(g, bits), reverse_bit_indices(p, bits)
    width = bits
    while width > 1:
        width //= 2
        dtype = narrow_dtype(width)
        g_lo, g_hi = g.astype(dtype), (g >> width).astype(dtype)
        p_lo, p_hi = p.astype(dtype), (p >> width).astype(dtype)
        if width == 1:  # the last level: the group propagate is no longer needed
            (t,) = gates.and_(comm, [(p_hi, g_lo)])
        else:
            t, p = gates.and_(comm, [(p_hi, g_lo), (p_hi, p_lo)])
        g = g_hi ^ t
    return (g & 1).astype(np.uint8)


def csa_reduce(comm, gates: AndGates, terms: list):
    """Carry-save adders: reduce binary-shared summands to two with the same sum (mod 2^k),
    one round per layer of adders."""
    terms = list(terms)
    while len(terms) > 2:
        groups, rest = terms[: len(terms) // 3 * 3], terms[len(terms) // 3 * 3 :]
        triples = [groups[i : i + 3] for i in range(0, len(groups), 3)]
        majorities = gates.and_(comm, [(a ^ c, b ^ c) for a, b, c in triples])
        terms = rest
        for (a, b, c), m in zip(triples, majorities):
            terms += [a ^ b ^ c, (m ^ c) << 1]
    return terms


def msb_of_sum(comm, gates: AndGates, terms: list, bits: int):
    """Binary shares (bit 0, dtype uint8) of the top bit of ``sum(terms) mod 2^bits``."""
    terms = csa_reduce(comm, gates, terms)
    if len(terms) == 1:
        return ((terms[0] >> (bits - 1)) & 1).astype(np.uint8)
    a, b = terms
    (g,) = gates.and_(comm, [(a, b)])
    p = a ^ b
    # The carry into the top bit is the carry out of bits 0..k-2: shifted up by one over a
    # bottom position that generates nothing, it is the carry out of a k-bit group.
    carry = group_generate(comm, gates, g << 1, p << 1, bits)
    return ((p >> (bits - 1)) & 1).astype(np.uint8) ^ carry


def narrow_dtype(bits: int) -> np.dtype:
    """The smallest unsigned dtype of at least ``bits`` bits."""
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
        if np.dtype(dtype).itemsize * 8 >= bits:
            return np.dtype(dtype)
    raise ValueError(bits)


def all_ones(comm, gates: AndGates, y, bits: int):
    """Binary shares (bit 0, dtype uint8) of the AND of the low ``bits`` bits of ``y``.

    Each level ANDs the upper half of the bits still in play onto the lower half, and keeps
    the words only as wide as the bits left, so the bytes shrink with the levels.
    """
    if bits & (bits - 1):
        raise ValueError(f"all_ones needs a power-of-two width, got {bits}")
    width = bits
    while width > 1:
        width //= 2
        dtype = narrow_dtype(width)
        low, high = y.astype(dtype), (y >> width).astype(dtype)
        (y,) = gates.and_(comm, [(low, high)])
    return (y & 1).astype(np.uint8)


def pack_bits(bits):
    """Pack 0/1 values (party axis first) eight to a byte: ``(N, ...) -> (N, ceil(n / 8))``."""
    flat = bits.reshape(bits.shape[0], -1).astype(np.uint8) & 1
    pad = (-flat.shape[1]) % 8
    flat = jnp.pad(flat, ((0, 0), (0, pad))).reshape(flat.shape[0], -1, 8)
    return jnp.sum(flat << jnp.arange(8, dtype=np.uint8), axis=-1, dtype=np.uint8)


def unpack_bits(packed, shape):
    """Inverse of :func:`pack_bits` for logical ``shape``."""
    bits = (packed[..., None] >> jnp.arange(8, dtype=np.uint8)) & 1
    size = math.prod(shape)
    return bits.reshape(packed.shape[0], -1)[:, :size].reshape(packed.shape[0], *shape)


def is_zero(comm, gates, x, bits: int):
    """XOR shares of the bit [x == 0] for XOR-shared ``bits``-bit words ``x``: the AND of
    all bits of the complement (a log-depth tree)."""
    ones = jnp.asarray(np.iinfo(x.dtype).max, x.dtype)
    return all_ones(comm, gates, gates.xor_public(comm, x, ones), bits)
