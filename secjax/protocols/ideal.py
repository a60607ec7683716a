"""The emulator's ``ideal`` mode: a protocol's functionality, computed on values.

:class:`Ideal` wraps a real protocol. A secret is held as its ring value (one "share", the
layout of ``plain``) and every interactive step computes its result directly: bilinear maps,
msb and eqz exactly, and a truncation by the formula of aby3's and semi2k's probabilistic
truncation applied to the value: it rounds up with probability (x mod 2^d) / 2^d within the
truncation's range and fails past it exactly as they do. So the outputs have the distribution
the real protocol gives them, failures included. The real step is still traced (never run), on
the real share layout, for its messages, so cost reports agree to the byte. No party's
circuit runs and no share is drawn: emulation costs about what ``plain`` does. Only the
emulator offers this mode; party processes always run the real steps.
"""

from __future__ import annotations

import dataclasses

import jax

from secjax.protocols import common
from secjax.protocols.base import Protocol
from secjax.protocols.plain import Plain


def _trunc_step(comm, a, *, bits, offset):
    """The probabilistic truncation of aby3 and semi2k computed on the value: the opened
    ``c = a + 2^(k-2) + r`` for a uniform ``r`` and the result formula of
    :func:`secjax.protocols.common.trunc_finish`, with one party holding every term. Its
    output is the real protocols' for the same ``r`` (the split of ``r`` into shares never
    changes it): ``floor(a / 2^bits)`` or that plus one for ``|a| < 2^(k-2)``, and past that
    bound the same off-by-2^(k-bits) results with the same probability."""
    ring = comm.ring
    r = comm.uniform(a.shape, a.dtype)
    below, top = common.trunc_mask(ring, r, bits)
    c = common.trunc_offset(ring, a, offset) + r
    return common.trunc_finish(ring, c, below, top, bits, True, offset)


def _private_product_step(comm, x, b, *, op, owner, private_first):
    """The product of the owner's ``x`` and the value ``b``."""
    return (op(x, b[0]) if private_first else op(b[0], x))[None]


def _reshare_step(comm, t):
    return t


# The plain protocol's steps on values, with the real protocols' rounding in truncation.
IDEAL_STEPS = dataclasses.replace(
    Plain.steps,
    trunc=_trunc_step,
    trunc_product=_trunc_step,
    private_product=_private_product_step,
    reshare=_reshare_step,
)

# Steps whose first argument is not shares (the owner's or a public value); every other
# argument of every step is shares.
_VALUE_FIRST = frozenset({"share", "from_public", "private_product"})
# Steps that take the real protocol's intermediate product layout.
_PRODUCT_LAYOUT = frozenset({"trunc_product", "reshare"})


class Ideal(Protocol):
    """The functionality of ``real`` on values, with ``real``'s exact cost report."""

    share_axes = 1
    steps = IDEAL_STEPS

    def __init__(self, real: Protocol):
        super().__init__(real.ring, real.n_parties, real.runtime)
        self.real = real
        self.name = real.name

    def _run(self, name: str, *arrays, elementwise=None, **static):
        real_avals = tuple(
            jax.ShapeDtypeStruct(self._real_shape(name, i, a), a.dtype)
            for i, a in enumerate(arrays)
        )
        return self.runtime.run(
            getattr(self.steps, name),
            *arrays,
            elementwise=elementwise,
            cost_of=(getattr(self.real.steps, name), real_avals),
            **static,
        )

    def _private_products(self) -> bool:
        return self.real.steps.private_product is not None

    def _real_shape(self, name: str, position: int, a) -> tuple[int, ...]:
        """The shape the real step ``name`` takes where this one takes ``a``."""
        if name in _VALUE_FIRST and position == 0:
            return a.shape
        if name in _PRODUCT_LAYOUT:  # the real product step's own layout
            return self.real.product_shape(self.logical_shape(a))
        return self.real.share_shape(self.logical_shape(a))


class Clear(Ideal):
    """The functionality with exact truncations (``plain``'s arithmetic shift), with the
    real protocol's cost report: the range report runs it, so that the magnitudes it records
    are those of the computation in the clear, whatever the truncations would do."""

    steps = dataclasses.replace(
        IDEAL_STEPS, trunc=Plain.steps.trunc, trunc_product=Plain.steps.trunc
    )
