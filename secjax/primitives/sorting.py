"""Oblivious sorting: ``sort`` (one or several operands, as ``jnp.sort``, ``argsort`` and
``median`` emit it) and ``top_k``, on a bitonic sorting network (Batcher, "Sorting networks
and their applications", 1968).

The network's compare-exchange pattern is public (it depends on the length alone), so the
parties learn nothing from it. The sorted axis is padded to a power of two n with the
largest value the ring holds (pads sort to the end and are dropped) and the network runs
log2(n) (log2(n) + 1) / 2 layers of n / 2 compare-exchanges; each layer is ONE comparison
call and ONE product call that swaps every carried operand at once.

Ties: with one operand a tie is invisible. With several (``argsort``: the keys and an
iota; ``top_k``'s indices) the first operand's ties are broken by the original position,
which makes the result equal to the stable sort XLA computes: each compare-exchange then
also tests the keys for equality and the positions for order (in the same comparison
call), and one more product combines them.

Cost per element of the padded axis, per layer: one comparison (two with ties broken),
one equality test with ties broken, and one product per carried operand; top_k sorts the
whole axis (a partial network would save layers; not done).
"""

from __future__ import annotations

import functools

import numpy as np

from secjax.primitives import register
from secjax.protocols.base import MULTIPLY, Local, array_namespace


@functools.lru_cache(maxsize=64)
def bitonic_layers(n: int) -> tuple:
    """The bitonic network on ``n`` (a power of two) positions: per layer, the positions
    that receive the smaller and the larger element of each compare-exchange."""
    layers = []
    k = 2
    while k <= n:
        j = k // 2
        while j >= 1:
            low, high = [], []
            for i in range(n):
                partner = i ^ j
                if partner > i:
                    ascending = (i & k) == 0
                    low.append(i if ascending else partner)
                    high.append(partner if ascending else i)
            layers.append((tuple(low), tuple(high)))
            j //= 2
        k *= 2
    return tuple(layers)


def _take_last(x, *, index):
    return x[..., np.asarray(index)]


def _place_last(low, high, *, order):
    """The pair halves back in position order (``order``: the inverse of low + high)."""
    xp = array_namespace(low)
    return xp.concatenate([low, high], axis=-1)[..., np.asarray(order)]


def _move_last(x, *, axis, rank):
    lead = x.ndim - rank
    return array_namespace(x).moveaxis(x, lead + axis, -1)


def _move_back(x, *, axis, rank):
    lead = x.ndim - rank
    return array_namespace(x).moveaxis(x, -1, lead + axis)


def _pad_last(x, *, n, fill):
    xp = array_namespace(x)
    pad = xp.broadcast_to(xp.asarray(fill, x.dtype), x.shape[:-1] + (n - x.shape[-1],))
    return xp.concatenate([x, pad], axis=-1)


def _slice_last(x, *, stop):
    return x[..., :stop]


def _largest(ctx) -> int:
    """The largest ring value a comparison can still subtract any encodable value from."""
    return (1 << (ctx.ring.bits - 3)) - 1


def sort_last(ctx, operands: list, *, break_ties: bool) -> list:
    """Shares of ``operands`` (of one logical shape) ordered along their last axis by the
    first one, ties broken by position when ``break_ties``."""
    protocol = ctx.protocol
    size = protocol.logical_shape(operands[0])[-1]
    n = 1 << max(size - 1, 0).bit_length()
    if break_ties:
        positions = np.broadcast_to(
            np.arange(n, dtype=ctx.ring.dtype), protocol.logical_shape(operands[0])[:-1] + (n,)
        )
    if n != size:
        fills = [_largest(ctx)] + [0] * (len(operands) - 1)
        operands = [
            protocol.local(Local.of(_pad_last, n=n, fill=f, on_shares=True), x)
            for x, f in zip(operands, fills)
        ]
    carried = operands + ([protocol.from_public(positions)] if break_ties else [])
    for low, high in bitonic_layers(n):
        take_low = Local.of(_take_last, index=low, on_shares=True)
        take_high = Local.of(_take_last, index=high, on_shares=True)
        a = [protocol.local(take_low, x) for x in carried]
        b = [protocol.local(take_high, x) for x in carried]
        d = [protocol.sub(bx, ax) for ax, bx in zip(a, b)]  # high - low, per operand
        if break_ties:
            # swap when key_low > key_high, or keys tie and position_low > position_high
            greater, later = _rows(protocol, protocol.msb(protocol.stack(d[0], d[-1])), 2)
            tie = protocol.eqz(d[0])
            swap = protocol.add(greater, protocol.bilinear(MULTIPLY, tie, later))
        else:
            swap = protocol.msb(d[0])
        moves = protocol.bilinear(MULTIPLY, protocol.stack(*[swap] * len(d)), protocol.stack(*d))
        moves = [protocol.index(moves, i) for i in range(len(d))]
        order = tuple(int(i) for i in np.argsort(np.asarray(low + high)))
        place = Local.of(_place_last, order=order, on_shares=True)
        carried = [
            protocol.local(place, protocol.add(ax, m), protocol.sub(bx, m))
            for ax, bx, m in zip(a, b, moves)
        ]
    result = carried[: len(operands)]
    if n != size:
        result = [
            protocol.local(Local.of(_slice_last, stop=size, on_shares=True), x) for x in result
        ]
    return result


def _rows(protocol, stacked, n: int) -> list:
    return [protocol.index(stacked, i) for i in range(n)]


def _along_last(ctx, values, axis: int) -> list:
    rank = len(values[0].shape)
    move = Local.of(_move_last, axis=axis, rank=rank, on_shares=True)
    return [ctx.protocol.local(move, ctx.secret(v).shares) for v in values]


@register("sort")
def sort_rule(ctx, *operands, dimension, is_stable, num_keys, **_):
    """Sort every operand by the first along ``dimension`` (see the module docstring)."""
    if num_keys != 1:
        raise ctx.unsupported(f"sorting by {num_keys} keys (lexicographic); one key only")
    rank = len(operands[0].shape)
    moved = _along_last(ctx, operands, dimension)
    result = sort_last(ctx, moved, break_ties=len(operands) > 1)
    back = Local.of(_move_back, axis=dimension, rank=rank, on_shares=True)
    return [ctx.make(ctx.protocol.local(back, r), aval) for r, aval in zip(result, ctx.out_avals)]


@register("top_k")
def top_k_rule(ctx, operand, *, k, axis=-1, **_):
    """The k largest along ``axis`` in decreasing order and their indices (the lowest
    index first among ties): a stable ascending sort of the negated operand."""
    protocol = ctx.protocol
    rank = len(operand.shape)
    axis = axis % rank
    (keys,) = _along_last(ctx, [operand], axis)
    shape = protocol.logical_shape(keys)
    iota = protocol.from_public(np.broadcast_to(np.arange(shape[-1], dtype=ctx.ring.dtype), shape))
    values, indices = sort_last(ctx, [protocol.neg(keys), iota], break_ties=True)
    first = Local.of(_slice_last, stop=k, on_shares=True)
    back = Local.of(_move_back, axis=axis, rank=rank, on_shares=True)
    values = protocol.local(back, protocol.neg(protocol.local(first, values)))
    indices = protocol.local(back, protocol.local(first, indices))
    return [ctx.make(values, ctx.out_avals[0]), ctx.make(indices, ctx.out_avals[1])]
