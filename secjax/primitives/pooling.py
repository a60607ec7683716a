"""Rules for windows: ``tile``, sum pooling (``reduce_window_sum``), max and min pooling
(``reduce_window_max`` / ``reduce_window_min``) and the max-pool gradient
(``select_and_scatter_add``).

``tile`` and ``reduce_window_sum`` are linear maps of their operand, applied to every share
(local). Max and min pooling lay every window out along a new last axis (a local gather at
public positions: the geometry is public) and reduce it by the comparison tree of
:mod:`secjax.primitives.compare`: per output element, w - 1 comparisons and products in
ceil(log2 w) rounds for a window of w elements. Padding takes the reduction's identity
(-inf for max, saturated in the ring as every public constant is).

``select_and_scatter_add`` (the transpose of max pooling) finds each window's first
maximum with the same tree carrying indices, turns the index into a one-hot row (one
equality test per window element), multiplies it by the incoming cotangent (one product)
and adds the rows back into the operand's positions (the transpose of the window gather,
local). Dilated windows are refused with a clear error.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

from secjax import ring as ring_ops
from secjax.primitives import register
from secjax.primitives.compare import tree_reduce
from secjax.primitives.structural import linear_rule
from secjax.protocols.base import MULTIPLY, Local
from secjax.values import Secret

register("tile", "reduce_window_sum")(linear_rule)


@functools.lru_cache(maxsize=256)
def window_positions(shape: tuple, window: tuple, strides: tuple, padding: tuple):
    """Flat input position of every (output element, window element), ``-1`` where the
    window lies in the padding: an int array of shape (*output shape, window size)."""
    out = tuple(
        (n + lo + hi - w) // s + 1 for n, w, s, (lo, hi) in zip(shape, window, strides, padding)
    )
    starts = [np.arange(o) * s - lo for o, s, (lo, _) in zip(out, strides, padding)]
    grids = np.meshgrid(*starts, indexing="ij")
    offsets = np.meshgrid(*[np.arange(w) for w in window], indexing="ij")
    coords = [g.reshape(*out, 1) + o.reshape(1, -1) for g, o in zip(grids, offsets)]
    inside = np.all([(c >= 0) & (c < n) for c, n in zip(coords, shape)], axis=0)
    flat = np.ravel_multi_index([np.clip(c, 0, n - 1) for c, n in zip(coords, shape)], shape)
    return np.where(inside, flat, -1)


def _gather_windows(x, *, geometry):
    index = window_positions(*geometry)
    padded = jnp.concatenate([x.reshape(-1), jnp.zeros((1,), x.dtype)])
    return padded[index]  # -1 reads the appended zero


def _scatter_windows(rows, *, geometry):
    shape = geometry[0]
    index = window_positions(*geometry)
    flat = jnp.zeros((math.prod(shape) + 1,), rows.dtype).at[index].add(rows)
    return flat[:-1].reshape(shape)


def _check_geometry(ctx, params):
    for name in ("base_dilation", "window_dilation"):
        if any(d != 1 for d in params.get(name, ())):
            raise ctx.unsupported(
                f"{name} {params[name]}: only undilated windows have a secure rule"
            )


def _windows(ctx, x, params, *, largest: bool):
    """Shares of every window of ``x`` along a new last axis, padding at the identity of
    max (``largest``) or min, and the windows' geometry."""
    _check_geometry(ctx, params)
    secret = ctx.secret(x)
    geometry = (
        tuple(secret.shape),
        tuple(params["window_dimensions"]),
        tuple(params["window_strides"]),
        tuple(map(tuple, params["padding"])),
    )
    rows = ctx.protocol.local(Local.of(_gather_windows, geometry=geometry), secret.shares)
    padded = window_positions(*geometry) < 0
    if padded.any():
        dtype = np.dtype(x.dtype)
        floating = jnp.issubdtype(dtype, jnp.floating)
        identity = -np.inf if floating else np.iinfo(dtype).min
        identity = identity if largest else (np.inf if floating else np.iinfo(dtype).max)
        fill = ctx.encode_public(np.asarray(identity, dtype), ctx.scale(dtype))
        rows = ctx.protocol.add_public(rows, np.where(padded, fill, 0).astype(ctx.ring.dtype))
    return Secret(rows, ctx.protocol.logical_shape(rows), np.dtype(x.dtype)), geometry


@register("reduce_window_max", "reduce_window_min")
def reduce_window_extreme_rule(ctx, x, **params):
    largest = ctx.primitive == "reduce_window_max"
    rows, _ = _windows(ctx, x, params, largest=largest)
    values, _ = tree_reduce(ctx, rows, (len(rows.shape) - 1,), largest=largest, with_index=False)
    return ctx.make(values, ctx.out_avals[0])


def _spread(x, *, n):
    return jnp.broadcast_to(x[..., None], (*x.shape, n))


@register("select_and_scatter_add")
def select_and_scatter_add_rule(ctx, source, operand, *, select_prim, **params):
    """Each window's cotangent goes to its first maximum (``ge``) or minimum (``le``),
    the tie rule of the comparison tree."""
    if select_prim.name not in ("ge", "le"):
        raise ctx.unsupported(
            f"select_prim {select_prim.name} (only ge and le, which keep "
            "the first extreme of a window, have a rule)"
        )
    largest = select_prim.name == "ge"
    rows, geometry = _windows(ctx, operand, params, largest=largest)
    protocol = ctx.protocol
    w = rows.shape[-1]
    _, index = tree_reduce(ctx, rows, (len(rows.shape) - 1,), largest=largest, with_index=True)
    spread_index = protocol.local(Local.of(_spread, n=w), index)
    hot = protocol.eqz(
        protocol.add_public(spread_index, ring_ops.encode(ctx.ring, -np.arange(w), 0))
    )
    cotangent = protocol.local(Local.of(_spread, n=w), ctx.secret(source).shares)
    picked = protocol.bilinear(MULTIPLY, hot, cotangent)
    # positions in the padding (-1) land in the scatter's extra slot, which is dropped
    out = protocol.local(Local.of(_scatter_windows, geometry=geometry), picked)
    return ctx.make(out, ctx.out_avals[0])
