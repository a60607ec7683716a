"""``plain``: fixed-point ring arithmetic with a single share and no secrecy.

It computes exactly what the secure protocols compute (encoding, ring wrap-around,
truncation, the nonlinear approximations built on these operations) without sharing, so
accuracy studies of large models run at the speed of local arithmetic. Truncation here is the
exact arithmetic shift, the result the secure protocols approximate to within one unit.
"""

from __future__ import annotations

from secjax import ring as ring_ops
from secjax.protocols.base import Protocol, Steps


def _share_step(comm, x, *, owner):
    return x[None]


def _from_public_step(comm, x):
    return x[None]


def _reveal_step(comm, shares, *, to):
    return shares[0]


def _bilinear_step(comm, a, b, *, op):
    return op(a[0], b[0])[None]


def _trunc_step(comm, a, *, bits, offset):
    """The exact arithmetic shift (``offset`` matters to the secure protocols only)."""
    return ring_ops.arshift(comm.ring, a, bits)


def _msb_step(comm, a):
    return ring_ops.msb(comm.ring, a)


def _eqz_step(comm, a, *, width=None, out_bits=None):
    if width is not None:
        a = a & a.dtype.type((1 << width) - 1)
    return (a == 0).astype(f"uint{out_bits}" if out_bits else a.dtype)


class Plain(Protocol):
    """One party holding its values in the clear, in the ring."""

    name = "plain"

    steps = Steps(
        share=_share_step,
        reveal=_reveal_step,
        from_public=_from_public_step,
        bilinear=_bilinear_step,
        trunc=_trunc_step,
        msb=_msb_step,
        eqz=_eqz_step,
    )
