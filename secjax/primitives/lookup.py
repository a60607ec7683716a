"""Table lookups (``gather``) at positions that are not public: embeddings of token ids.

A row lookup ``table[ids]`` equals ``one_hot(ids) @ table``. When the ids are private, their
owner builds the one-hot matrix locally and shares it; when they are secret, the one-hot
matrix is computed by one batched equality test against every row number. The product with
the table is then an ordinary secure contraction, exact (the one-hot is an integer at scale
0, so no truncation). Out-of-range ids give a zero row.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from secjax import ring as ring_ops
from secjax.primitives import register
from secjax.primitives.arith import apply_bilinear
from secjax.primitives.structural import linear_rule
from secjax.protocols.base import Bilinear, Local
from secjax.values import Private, Public, Secret


def _is_row_lookup(operand_ndim: int, indices_shape, dimension_numbers, slice_sizes,
                   operand_shape) -> bool:
    """Whether the gather is ``operand[ids]`` along axis 0 with rows kept whole."""
    dn = dimension_numbers
    batch = len(indices_shape) - 1
    return (indices_shape[-1] == 1 and tuple(dn.collapsed_slice_dims) == (0,)
            and tuple(dn.start_index_map) == (0,) and not dn.operand_batching_dims
            and tuple(slice_sizes) == (1, *operand_shape[1:])
            and tuple(dn.offset_dims) == tuple(range(batch, batch + operand_ndim - 1)))


def _broadcast_rows(x, *, rows):
    return jnp.broadcast_to(x, (*x.shape[:-1], rows))


def _one_hot(ctx, indices, rows: int):
    """A 0/1 integer matrix with a 1 at each index: private or secret like the indices."""
    if isinstance(indices, Private):
        hot = jax.nn.one_hot(indices.value[..., 0], rows, dtype=jnp.int32)
        return Private(hot, indices.owner)
    indices = ctx.secret(indices)
    spread = ctx.protocol.local(Local(_broadcast_rows, (("rows", rows),)), indices.shares)
    offsets = ring_ops.encode(ctx.ring, -jnp.arange(rows), 0)
    hot = ctx.protocol.eqz(ctx.protocol.add_public(spread, offsets))
    return Secret(hot, (*indices.shape[:-1], rows), np.dtype(np.int32))


@register("gather")
def gather_rule(ctx, operand, indices, *, dimension_numbers, slice_sizes, **params):
    """Public positions are a local gather; private or secret row ids go through a one-hot
    contraction."""
    if isinstance(indices, Public):
        return linear_rule(ctx, operand, indices, dimension_numbers=dimension_numbers,
                           slice_sizes=slice_sizes, **params)
    if not _is_row_lookup(len(operand.shape), indices.shape, dimension_numbers, slice_sizes,
                          operand.shape):
        raise ctx.unsupported(
            "gather at non-public positions is supported for row lookups `table[ids]` "
            "(embeddings); this gather has another shape")
    rows = operand.shape[0]
    hot = _one_hot(ctx, indices, rows)
    contract = Bilinear(ring_ops.dot_general,
                        (("dimension_numbers", (((len(hot.shape) - 1,), (0,)), ((), ()))),))
    return apply_bilinear(ctx, contract, hot, operand)
