"""Ideal counterparts of the interactive steps, for the emulator's ``ideal`` mode.

An ideal step computes what the real step's output shares stand for from the opened inputs,
with one plain ring operation, and deals it as a fresh uniformly random sharing: the outputs
have the distribution the real protocol gives them (bilinear maps, msb and eqz are exact; a
truncation rounds up with probability (x mod 2^d) / 2^d, as the probabilistic truncation
does), while no party-by-party circuit runs. The emulator still traces the real step for its
exact messages and rounds, so cost reports do not change; only the work done to emulate
shrinks (an aby3 product: one ring operation instead of six). The party processes of the
network runtime always run the real steps.

A protocol gives its layout as ``combine(comm, shares)`` (the value, at every party) and
``deal(comm, value)`` (a fresh sharing); :func:`ideal_steps` builds the four ideal steps from them.
"""
from __future__ import annotations

import jax.numpy as jnp

from secjax import ring as ring_ops


def additive_sharing(comm, value):
    """A fresh additive sharing of ``value`` (no party axis): parties 0..n-2 take uniform
    shares, the last party the rest."""
    r = comm.random(value.shape, value.dtype)
    first = comm.party_index(r) < comm.n_parties - 1
    drawn = comm.total(jnp.where(first, r, 0).astype(value.dtype))
    return jnp.where(first, r, value - drawn).astype(value.dtype)


def _uniform_value(comm, shape, dtype):
    """One uniform array (no party axis)."""
    r = comm.random(shape, dtype)
    return comm.total(jnp.where(comm.party_index(r) == 0, r, 0).astype(dtype))


def ideal_steps(combine, deal) -> dict:
    """The ideal ``bilinear``, ``trunc``, ``msb`` and ``eqz`` steps of one share layout (each
    built once per protocol module, so compiled kernels are cached by identity)."""

    def bilinear(comm, x, y, *, op):
        return deal(comm, op(combine(comm, x), combine(comm, y)))

    def trunc(comm, x, *, bits):
        ring = comm.ring
        value = combine(comm, x)
        low = _uniform_value(comm, value.shape, ring.dtype) & jnp.asarray((1 << bits) - 1,
                                                                            ring.dtype)
        return deal(comm, ring_ops.arshift(ring, value + low, bits))

    def msb(comm, x):
        return deal(comm, ring_ops.msb(comm.ring, combine(comm, x)))

    def eqz(comm, x):
        value = combine(comm, x)
        return deal(comm, (value == 0).astype(value.dtype))

    for fn in (bilinear, trunc, msb, eqz):
        fn.__qualname__ = f"ideal.{fn.__name__}"
    return {"bilinear": bilinear, "trunc": trunc, "msb": msb, "eqz": eqz}

