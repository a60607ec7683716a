"""Rules for primitives that carry jaxprs: calls are entered, loops are run with public
control, and a conditional on a secret index evaluates every branch and selects obliviously."""

from __future__ import annotations

import jax.numpy as jnp
from jax.extend.core import ClosedJaxpr

from secjax.primitives import register
from secjax.protocols.base import Local
from secjax.values import Private, Public, Secret


@register("jit", "closed_call")
def call_rule(ctx, *args, **params):
    """Enter the called jaxpr."""
    closed = params.get("jaxpr", params.get("call_jaxpr"))
    return ctx.eval_jaxpr(closed, list(args))


@register("custom_jvp_call", "custom_vjp_call")
def custom_derivative_rule(ctx, *args, call_jaxpr=None, fun_jaxpr=None, **_):
    """Custom derivatives only matter for differentiation: run the primal function."""
    return ctx.eval_jaxpr(call_jaxpr if call_jaxpr is not None else fun_jaxpr, list(args))


@register("remat2")
def remat_rule(ctx, *args, jaxpr, **_):
    """Rematerialisation is a no-op without differentiation: run the body once."""
    closed = jaxpr if isinstance(jaxpr, ClosedJaxpr) else ClosedJaxpr(jaxpr, ())
    return ctx.eval_jaxpr(closed, list(args))


def _public_flag(ctx, value, what: str) -> bool:
    if not isinstance(value, Public):
        raise ctx.unsupported(
            f"the {what} depends on secret data, and a secure loop cannot stop early without "
            "revealing it; loop over a public count (e.g. fori_loop with static bounds)"
        )
    return bool(value.value)


@register("while")
def while_rule(ctx, *args, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    """A while loop whose condition stays public, run step by step."""
    cond_consts = list(args[:cond_nconsts])
    body_consts = list(args[cond_nconsts : cond_nconsts + body_nconsts])
    carry = list(args[cond_nconsts + body_nconsts :])
    while _public_flag(ctx, ctx.eval_jaxpr(cond_jaxpr, cond_consts + carry)[0], "loop condition"):
        carry = ctx.eval_jaxpr(body_jaxpr, body_consts + carry)
    return carry


def _take(ctx, value, i: int):
    """Row ``i`` of a scanned-over value."""
    if isinstance(value, Public):
        return Public(value.value[i])
    if isinstance(value, Private):
        return Private(value.value[i], value.owner)
    return Secret(ctx.protocol.index(value.shares, i), value.shape[1:], value.dtype)


def _stack_values(ctx, values, aval):
    if all(isinstance(v, Public) for v in values):
        return Public(jnp.stack([v.value for v in values]))
    shares = [ctx.secret(v).shares for v in values]
    return ctx.make(ctx.protocol.stack(*shares), aval)


@register("scan")
def scan_rule(ctx, *args, jaxpr, num_consts, num_carry, length, reverse, **_):
    """``lax.scan`` unrolled: each step's body reuses the kernels compiled for the first."""
    consts = list(args[:num_consts])
    carry = list(args[num_consts : num_consts + num_carry])
    xs = list(args[num_consts + num_carry :])
    steps = range(length - 1, -1, -1) if reverse else range(length)
    ys_per_step = []
    for i in steps:
        out = ctx.eval_jaxpr(jaxpr, consts + carry + [_take(ctx, x, i) for x in xs])
        carry, ys = out[:num_carry], out[num_carry:]
        ys_per_step.append(ys)
    if reverse:
        ys_per_step.reverse()
    y_avals = ctx.out_avals[num_carry:]
    if length == 0:
        return carry + [Public(jnp.zeros(a.shape, a.dtype)) for a in y_avals]
    stacked = [
        _stack_values(ctx, [ys[j] for ys in ys_per_step], y_avals[j]) for j in range(len(y_avals))
    ]
    return carry + stacked


@register("cond")
def cond_rule(ctx, index, *operands, branches, **_):
    """A public index runs one branch; a secret one runs all and selects obliviously."""
    if isinstance(index, Public):
        chosen = int(jnp.clip(index.value, 0, len(branches) - 1))
        return ctx.eval_jaxpr(branches[chosen], list(operands))
    outs = [ctx.eval_jaxpr(branch, list(operands)) for branch in branches]
    index = ctx.secret(index)
    protocol = ctx.protocol
    results = []
    for j, aval in enumerate(ctx.out_avals):
        acc = ctx.secret(outs[0][j]).shares
        for b in range(1, len(branches)):
            # Branch b is taken when index >= b (lax.cond clamps the index to its range).
            at_least_b = protocol.sub(
                ctx.ones(index.shape),
                protocol.msb(
                    protocol.add_public(index.shares, jnp.asarray(-b).astype(ctx.ring.dtype))
                ),
            )
            take = ctx.secret(outs[b][j]).shares
            acc = protocol.select(_broadcast_bit(ctx, at_least_b, index, aval), take, acc)
        results.append(ctx.make(acc, aval))
    return results


def _broadcast_bit(ctx, bit_shares, index, aval):
    """The scalar branch bit broadcast to the shape of the selected output."""
    if tuple(aval.shape) == tuple(index.shape):
        return bit_shares
    return ctx.protocol.local(Local.of(jnp.broadcast_to, shape=tuple(aval.shape)), bit_shares)
