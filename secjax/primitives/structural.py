"""Rules for primitives that are linear maps of their data operands: reshapes, slices,
reductions by sum, gathers and selects at public positions. Each applies to every share alike
and needs no communication."""

from __future__ import annotations

import jax
from jax.extend.core import Primitive

from secjax.primitives import register
from secjax.protocols.base import Local, array_namespace
from secjax.values import Public, Secret

# Operands that pick positions rather than carry data: they must be public.
_POSITION_OPERANDS = {
    "gather": (1,),
    "dynamic_slice": "rest:1",
    "dynamic_update_slice": "rest:2",
    "select_n": (0,),
    "scatter-add": (1,),
    "scatter": (1,),
}


def _position_operands(name: str, n_operands: int) -> tuple[int, ...]:
    spec = _POSITION_OPERANDS.get(name, ())
    if isinstance(spec, str):
        return tuple(range(int(spec.split(":")[1]), n_operands))
    return spec


def freeze(value):
    """A hashable stand-in for an equation parameter (tuples for lists and dicts)."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def bind_primitive(*operands, primitive: Primitive, params: tuple):
    """``primitive.bind`` with frozen parameters: a hashable function of its operands."""
    result = primitive.bind(*operands, **dict(params))
    return tuple(result) if primitive.multiple_results else result


def _scatter(operand, indices, updates, *, combine, params):
    return combine(operand, indices, updates, **dict(params))


def _reshape_shares(x, *, new_sizes, rank):
    return x.reshape(x.shape[: x.ndim - rank] + tuple(new_sizes))


def _transpose_shares(x, *, permutation):
    lead = x.ndim - len(permutation)
    return array_namespace(x).transpose(x, (*range(lead), *(lead + axis for axis in permutation)))


def _broadcast_shares(x, *, shape, broadcast_dimensions):
    lead = x.ndim - len(broadcast_dimensions)
    placed = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        placed[d] = x.shape[lead + i]
    kept = x.reshape(x.shape[:lead] + tuple(placed))
    return array_namespace(x).broadcast_to(kept, x.shape[:lead] + tuple(shape))


def _squeeze_shares(x, *, dimensions, rank):
    lead = x.ndim - rank
    return array_namespace(x).squeeze(x, axis=tuple(lead + d for d in dimensions))


def _reduce_sum_shares(x, *, axes, rank):
    lead = x.ndim - rank
    return array_namespace(x).sum(x, axis=tuple(lead + a for a in axes), dtype=x.dtype)


# Primitives whose per-share map is written for whole share arrays (numpy or JAX), so the
# emulator runs them on the host without compiling: (function, the parameters it takes,
# whether it needs the operand's logical rank).
_ON_SHARES = {
    "reshape": (_reshape_shares, ("new_sizes",), True),
    "transpose": (_transpose_shares, ("permutation",), False),
    "broadcast_in_dim": (_broadcast_shares, ("shape", "broadcast_dimensions"), False),
    "squeeze": (_squeeze_shares, ("dimensions",), True),
    "reduce_sum": (_reduce_sum_shares, ("axes",), True),
}


def local_primitive(primitive: Primitive, params: dict, rank: int | None = None) -> Local:
    """The equation ``primitive[params]`` as a per-share linear map on ring arrays
    (``rank``: its operand's logical rank, for the maps that run on whole share arrays)."""
    name = primitive.name
    on_shares = _ON_SHARES.get(name)
    if on_shares is not None and rank is not None and params.get("dimensions") is None:
        fn, taken, needs_rank = on_shares
        kept = {k: freeze(params[k]) for k in taken} | ({"rank": rank} if needs_rank else {})
        return Local.of(fn, on_shares=True, **kept)
    if name in ("scatter-add", "scatter"):
        # The equation's update_jaxpr is typed for floats; lax rebuilds one for the ring.
        kept = {
            k: params[k]
            for k in ("dimension_numbers", "indices_are_sorted", "unique_indices", "mode")
        }
        combine = jax.lax.scatter_add if name == "scatter-add" else jax.lax.scatter
        return Local.of(_scatter, combine=combine, params=freeze(kept))
    if name == "gather":
        params = dict(params, fill_value=0)  # out-of-bounds rows read as a sharing of 0
    frozen = tuple(sorted((k, freeze(v)) for k, v in params.items()))
    return Local.of(bind_primitive, primitive=primitive, params=frozen)


def linear_rule(ctx, *operands, **params):
    """Apply the current (linear) primitive to every share; position operands stay public."""
    name = ctx.primitive
    positions = _position_operands(name, len(operands))
    for i in positions:
        if not isinstance(operands[i], Public):
            raise ctx.unsupported(
                f"operand {i} selects positions and is {type(operands[i]).__name__.lower()}; "
                "secjax needs it public (secret positions need a one-hot rule)"
            )
    prepared = [
        op.value if i in positions else ctx.secret(op).shares for i, op in enumerate(operands)
    ]
    shared = tuple(i not in positions for i in range(len(operands)))
    out = ctx.protocol.local(
        local_primitive(ctx.eqn.primitive, params, rank=len(operands[0].shape)),
        *prepared,
        shared=shared,
    )
    if ctx.eqn.primitive.multiple_results:
        return [ctx.make(s, aval) for s, aval in zip(out, ctx.out_avals)]
    return ctx.make(out, ctx.out_avals[0])


register(
    "reshape",
    "transpose",
    "broadcast_in_dim",
    "squeeze",
    "slice",
    "rev",
    "reduce_sum",
    "cumsum",
    "concatenate",
    "stack",
    "pad",
    "dynamic_slice",
    "dynamic_update_slice",
    "scatter",
    "split",
)(linear_rule)


@register("copy", "stop_gradient", "reduce_precision", "optimization_barrier")
def identity_rule(ctx, *operands, **params):
    """Value-preserving primitives (copies, gradient and precision markers)."""
    values = [ctx.secret(op) if not isinstance(op, Secret) else op for op in operands]
    return values if ctx.eqn.primitive.multiple_results else values[0]


@register("select_n")
def select_n_rule(ctx, predicate, *cases, **params):
    """``select_n``: a public predicate picks shares locally; a secret one multiplexes."""
    if isinstance(predicate, Public):
        return linear_rule(ctx, predicate, *cases, **params)
    if len(cases) != 2:
        raise ctx.unsupported("a secret predicate choosing among more than two cases")
    pred = ctx.secret(predicate)
    false_case, true_case = (ctx.secret(c) for c in cases)
    shares = ctx.protocol.select(pred.shares, true_case.shares, false_case.shares)
    return ctx.make(shares, ctx.out_avals[0])
