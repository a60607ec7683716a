"""Gathers at positions that are not public: embeddings of token ids, and picks such as CLIP's
pooled output ``hidden[arange(batch), ids.argmax(-1)]``; and their transposes, scatter-adds
at positions that are not public (the gradient of a gather at secret labels, as in a
cross-entropy loss).

A gather that picks whole slices of its operand at positions is a contraction with a one-hot
matrix. The operand dimensions the index vector addresses are flattened (row-major), the flat
position is a linear function of the index components (public multipliers, local), and
``one_hot(flat) @ operand`` picks the slices. When the indices are private, their owner builds
the one-hot matrix locally and shares it; when they are secret, it is one batched equality
test of the flat position against every position number. The contraction is exact (the one-hot
is an integer at scale 0, so no truncation); batching dimensions of the gather are batch
dimensions of the contraction.

Out-of-bounds positions follow the gather's mode: ``clip`` clamps each component (one
comparison pair per component when secret); ``fill`` reads a zero slice (a ring has no NaN to
fill with); ``promise_in_bounds`` trusts the positions (a private one is clamped, as XLA does).

A scatter-add is the transpose of the gather with the same positions: the same one-hot
matrix, contracted with the updates over the index batch instead of with the operand over
its positions, then added to the operand. Its cost is the gather's.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.lax import GatherDimensionNumbers, GatherScatterMode

from secjax import ring as ring_ops
from secjax.primitives import register
from secjax.primitives.bilinear import apply_bilinear, apply_private_bilinear
from secjax.primitives.compare import clamp_shares, to_last
from secjax.primitives.structural import linear_rule
from secjax.protocols.base import MULTIPLY, Bilinear, Local
from secjax.values import Private, Public, Secret

# Gathers from tables of at least this many rows compute their one-hot product in the ring of
# NARROW_BITS bits: measured on CPU under aby3, the product then saves more than the sign
# tests of widening its result cost from a few thousand rows (all-MiniLM-L6-v2: 30,522).
NARROW_BITS = 32
NARROW_MIN_POSITIONS = 4096


@dataclasses.dataclass(frozen=True)
class SlicePick:
    """A gather that picks whole operand slices at positions, as a one-hot contraction.

    batch: shape of the index batch (``indices.shape[:-1]``).
    indexed: operand dimensions the index vector addresses, in operand order.
    sizes: their sizes; the one-hot has ``prod(sizes)`` columns.
    limits: per index component (index-vector order), the size of the dimension it addresses.
    strides: per index component, its multiplier in the row-major flat position.
    contraction: ``dot_general`` dimension numbers of ``(one_hot, operand)``.
    result: shape of that contraction's result.
    layout: permutation from the contraction's result to the gather's output (whose size-1
        kept dimensions are then restored by a reshape).
    """

    batch: tuple[int, ...]
    indexed: tuple[int, ...]
    sizes: tuple[int, ...]
    limits: tuple[int, ...]
    strides: tuple[int, ...]
    contraction: tuple
    result: tuple[int, ...]
    layout: tuple[int, ...]

    @property
    def positions(self) -> int:
        return math.prod(self.sizes)


def slice_pick(operand_shape, indices_shape, dimension_numbers, slice_sizes):
    """The :class:`SlicePick` of a gather, or a string saying why it is not one."""
    dn = dimension_numbers
    rank = len(operand_shape)
    batch = tuple(indices_shape[:-1])
    index_map = tuple(dn.start_index_map)
    operand_batching = tuple(dn.operand_batching_dims)
    indices_batching = tuple(dn.start_indices_batching_dims)
    for d in range(rank):
        picked = d in index_map or d in operand_batching
        if picked and slice_sizes[d] != 1:
            return (
                f"it takes a window of {slice_sizes[d]} along operand dimension {d} at a "
                "non-public position (a dynamic slice); only single positions can be "
                "picked by a one-hot contraction"
            )
        if not picked and slice_sizes[d] != operand_shape[d]:
            return (
                f"it takes {slice_sizes[d]} of the {operand_shape[d]} entries of operand "
                f"dimension {d}, which no index addresses; only whole slices can be "
                "picked by a one-hot contraction"
            )
    indexed = tuple(sorted(index_map))
    sizes = tuple(operand_shape[d] for d in indexed)
    row_major = {d: math.prod(operand_shape[e] for e in indexed if e > d) for d in indexed}
    free_batch = [j for j in range(len(batch)) if j not in indices_batching]
    hot_contract = tuple(range(len(batch), len(batch) + len(indexed)))
    contraction = ((hot_contract, indexed), (indices_batching, operand_batching))
    # the contraction's result: paired batch dims, the other index batch dims, then the
    # operand's whole-slice dims; the gather's output interleaves index batch dims with the
    # offset dims (kept operand dims, indexed ones among them of size 1)
    whole = [d for d in range(rank) if d not in indexed and d not in operand_batching]
    result = (
        [("batch", j) for j in indices_batching]
        + [("batch", j) for j in free_batch]
        + [("operand", d) for d in whole]
    )
    kept = iter(
        d for d in range(rank) if d not in dn.collapsed_slice_dims and d not in operand_batching
    )
    batch_dims = iter(range(len(batch)))
    output = [
        ("operand", next(kept)) if protocol in dn.offset_dims else ("batch", next(batch_dims))
        for protocol in range(len(batch) + len(dn.offset_dims))
    ]
    layout = tuple(result.index(label) for label in output if label in result)
    result_shape = tuple(batch[i] if kind == "batch" else operand_shape[i] for kind, i in result)
    return SlicePick(
        batch,
        indexed,
        sizes,
        tuple(operand_shape[d] for d in index_map),
        tuple(row_major[d] for d in index_map),
        contraction,
        result_shape,
        layout,
    )


def _flat_position(x, *, strides):
    """Row-major flat position of index vectors along the last axis (linear)."""
    return jnp.sum(x * jnp.asarray(strides, x.dtype), axis=-1, dtype=x.dtype)


def _spread(x, *, positions):
    return jnp.broadcast_to(x[..., None], (*x.shape, positions))


def _count_out_of_range(bits):
    """Per index vector, how many of its (below, above) range tests failed."""
    return jnp.sum(bits, axis=(0, bits.ndim - 1), dtype=bits.dtype)


def _private_one_hot(pick: SlicePick, indices: Private, mode) -> Private:
    """The owner's one-hot matrix, computed in the clear with the mode's exact bounds."""
    comps = jnp.asarray(indices.value)
    limits = jnp.asarray(pick.limits, comps.dtype)
    if mode == GatherScatterMode.FILL_OR_DROP:
        valid = jnp.all((comps >= 0) & (comps < limits), axis=-1)
    else:
        comps = jnp.clip(comps, 0, limits - 1)
        valid = jnp.ones(pick.batch, bool)
    flat = jnp.sum(comps * jnp.asarray(pick.strides, comps.dtype), axis=-1)
    hot = jax.nn.one_hot(flat, pick.positions, dtype=jnp.int32) * valid[..., None]
    return Private(hot.reshape(*pick.batch, *pick.sizes).astype(jnp.int32), indices.owner)


def _secret_one_hot(ctx, pick: SlicePick, indices, mode, bits: int | None = None) -> Secret:
    """The one-hot matrix of secret indices: equality of the flat position with every
    position number. Clipping clamps each component first; filling moves the index vectors
    with a component out of range to position -1, which equals no position number (a test
    and a product per index vector, not per position). The flat position then lies in
    [-1, positions), so every difference to a position number is below ``positions`` in
    magnitude and the equality tests need only that many bits (:meth:`Protocol.eqz`)."""
    protocol = ctx.protocol
    comps = ctx.secret(indices).shares
    shape = (*pick.batch, len(pick.limits))
    last = protocol.from_public(
        jnp.broadcast_to(ring_ops.encode(ctx.ring, jnp.asarray(pick.limits) - 1, 0), shape)
    )
    if mode == GatherScatterMode.CLIP:
        comps = clamp_shares(
            protocol, comps, protocol.from_public(jnp.zeros(shape, ctx.ring.dtype)), last
        )
    flat = protocol.local(Local.of(_flat_position, strides=pick.strides), comps)
    if mode == GatherScatterMode.FILL_OR_DROP:
        outside = protocol.local(
            Local(_count_out_of_range),
            protocol.msb(protocol.stack(comps, protocol.sub(last, comps))),
        )
        valid = protocol.eqz(outside, width=_width_above(2 * len(pick.limits)))
        one = ring_ops.encode(ctx.ring, jnp.ones(pick.batch, jnp.int32), 0)
        moved = protocol.bilinear(MULTIPLY, valid, protocol.add_public(flat, one))
        flat = protocol.add_public(moved, -one)
    spread = protocol.local(Local.of(_spread, positions=pick.positions), flat)
    offsets = ring_ops.encode(ctx.ring, -jnp.arange(pick.positions), 0)
    hot = protocol.eqz(
        protocol.add_public(spread, offsets), width=_width_above(pick.positions), bits=bits
    )
    rank = len(protocol.logical_shape(hot))
    hot = protocol.local(
        Local.of(
            to_last, perm=tuple(range(rank)), shape=(*pick.batch, *pick.sizes), on_shares=True
        ),
        hot,
    )
    return Secret(hot, (*pick.batch, *pick.sizes), np.dtype(np.int32))


def _width_above(bound: int) -> int:
    """The least power of two ``w`` with ``2^w > bound``: the bits an equality test needs for
    values of magnitude at most ``bound``."""
    return 1 << max(0, (bound.bit_length() - 1).bit_length())


def _narrow_width(ctx, pick: SlicePick) -> int | None:
    """The narrower ring of a gather's one-hot product (``Config.narrow_lookups``): 32 bits
    for a table of at least :data:`NARROW_MIN_POSITIONS` rows in a wider ring, else None.
    Each output element is a table entry, so it fits where the entries do; below that size
    the sign tests that widen the result cost more than the narrow product saves."""
    if (
        ctx.protocol.narrow_lookups
        and ctx.ring.bits > NARROW_BITS
        and pick.positions >= NARROW_MIN_POSITIONS
    ):
        return NARROW_BITS
    return None


def _one_hot(ctx, pick, indices, mode, what: str, bits: int | None = None):
    """The one-hot picker of ``pick`` (a clear error where it is a reason it cannot be one)
    at private or secret ``indices``, under the gather or scatter ``mode``; secret ones as
    shares in the ring of ``bits`` bits when given (for a narrow product)."""
    if isinstance(pick, str):
        raise ctx.unsupported(f"{what} at {type(indices).__name__.lower()} positions: {pick}")
    mode = GatherScatterMode.from_any(mode)
    if isinstance(indices, Private):
        return _private_one_hot(pick, indices, mode)
    return _secret_one_hot(ctx, pick, indices, mode, bits)


@register("gather")
def gather_rule(ctx, operand, indices, *, dimension_numbers, slice_sizes, mode, **params):
    """Public positions are a local gather; private or secret positions that pick whole
    slices go through a one-hot contraction."""
    if isinstance(indices, Public):
        return linear_rule(
            ctx,
            operand,
            indices,
            dimension_numbers=dimension_numbers,
            slice_sizes=slice_sizes,
            mode=mode,
            **params,
        )
    pick = slice_pick(operand.shape, indices.shape, dimension_numbers, slice_sizes)
    public_table = isinstance(operand, Public)  # a local product: nothing to narrow
    width = None if isinstance(pick, str) or public_table else _narrow_width(ctx, pick)
    hot = _one_hot(ctx, pick, indices, mode, "gather", bits=width)
    out_aval = ctx.out_avals[0]
    contract = Bilinear(ring_ops.dot_general, (("dimension_numbers", pick.contraction),))
    result = jax.ShapeDtypeStruct(pick.result, out_aval.dtype)
    if isinstance(hot, Private) and not public_table:  # used here alone
        picked = apply_private_bilinear(ctx, contract, hot, operand, result, width=width)
    else:
        picked = apply_bilinear(ctx, contract, hot, operand, out_aval=result, width=width)
    if pick.layout == tuple(range(len(pick.layout))) and pick.result == out_aval.shape:
        return ctx.make(picked.shares, out_aval)
    relayout = Local.of(to_last, perm=pick.layout, shape=tuple(out_aval.shape), on_shares=True)
    return ctx.make(ctx.protocol.local(relayout, picked.shares), out_aval)


def _adjoint_gather(operand_shape, updates_shape, dn):
    """``(dimension_numbers, slice_sizes)`` of the gather whose transpose is the scatter
    with dimension numbers ``dn`` (its output has the updates' shape)."""
    gather_dn = GatherDimensionNumbers(
        offset_dims=tuple(dn.update_window_dims),
        collapsed_slice_dims=tuple(dn.inserted_window_dims),
        start_index_map=tuple(dn.scatter_dims_to_operand_dims),
        operand_batching_dims=tuple(dn.operand_batching_dims),
        start_indices_batching_dims=tuple(dn.scatter_indices_batching_dims),
    )
    windows = iter(updates_shape[d] for d in dn.update_window_dims)
    slice_sizes = tuple(
        1 if d in dn.inserted_window_dims or d in dn.operand_batching_dims else next(windows)
        for d in range(len(operand_shape))
    )
    return gather_dn, slice_sizes


def _unlayout(x, *, perm, shape):
    """Inverse of the gather's relayout (:func:`~secjax.primitives.compare.to_last`): from
    the gather's output back to its contraction's."""
    return jnp.transpose(jnp.reshape(x, shape), perm)


def _spread_contraction(pick: SlicePick, rank: int):
    """``(dot_general dimension numbers of (one_hot, updates), permutation to operand
    order)`` of the transposed pick: the index batch contracted away, paired batch
    dimensions kept, the one-hot's position axes landing on the indexed dimensions."""
    (hot_contract, indexed), (hot_batch, operand_batch) = pick.contraction
    n_batch = len(pick.batch)
    nb = len(hot_batch)
    free = tuple(j for j in range(n_batch) if j not in hot_batch)
    dims = ((free, tuple(range(nb, nb + len(free)))), (tuple(hot_batch), tuple(range(nb))))
    whole = [d for d in range(rank) if d not in indexed and d not in operand_batch]
    labels = list(operand_batch) + list(indexed) + whole
    return dims, tuple(labels.index(d) for d in range(rank))


@register("scatter-add")
def scatter_add_rule(ctx, operand, indices, updates, *, dimension_numbers, mode, **params):
    """Public positions: a local scatter-add. Private or secret positions: the operand plus
    the transpose of the one-hot gather at those positions applied to the updates."""
    if isinstance(indices, Public):
        return linear_rule(
            ctx, operand, indices, updates, dimension_numbers=dimension_numbers, mode=mode, **params
        )
    gather_dn, slice_sizes = _adjoint_gather(operand.shape, updates.shape, dimension_numbers)
    pick = slice_pick(operand.shape, indices.shape, gather_dn, slice_sizes)
    hot = _one_hot(ctx, pick, indices, mode, "scatter-add")
    out_aval = ctx.out_avals[0]
    rank = len(out_aval.shape)
    inverse = tuple(int(i) for i in np.argsort(pick.layout))
    laid = tuple(pick.result[i] for i in pick.layout)
    moved = ctx.protocol.local(
        Local.of(_unlayout, perm=inverse, shape=laid), ctx.secret(updates).shares
    )
    moved = ctx.make(moved, jax.ShapeDtypeStruct(pick.result, updates.dtype))
    dims, perm = _spread_contraction(pick, rank)
    spread_shape = tuple(out_aval.shape[d] for d in np.argsort(perm))
    contract = Bilinear(ring_ops.dot_general, (("dimension_numbers", dims),))
    result = jax.ShapeDtypeStruct(spread_shape, out_aval.dtype)
    if isinstance(hot, Private):  # used here alone
        spread = apply_private_bilinear(ctx, contract, hot, moved, result)
    else:
        spread = apply_bilinear(ctx, contract, hot, moved, out_aval=result)
    placed = ctx.protocol.local(Local.of(_transpose, perm=perm), spread.shares)
    return ctx.make(ctx.protocol.add(ctx.secret(operand).shares, placed), out_aval)


def _transpose(x, *, perm):
    return jnp.transpose(x, perm)
