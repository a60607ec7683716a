"""What a rule sees while it runs: the protocol, the ring, the equation, and helpers that move
values between kinds (public, private, secret) and scales."""

from __future__ import annotations

import os
from typing import Callable

import jax.numpy as jnp
import numpy as np
from jax.extend.core import Literal

from secjax import ring as ring_ops
from secjax.errors import EncodingError, UnsupportedError, describe
from secjax.jax_internals import user_frames
from secjax.primitives.policy import DEFAULT_POLICY
from secjax.protocols.base import Protocol
from secjax.values import (
    DeferredSecret,
    Private,
    Public,
    Secret,
    Value,
    encodable,
    scale_of,
)


class RuleContext:
    """State shared by the rules of one secure evaluation.

    ``eval_jaxpr(closed_jaxpr, values)`` is supplied by the interpreter so that rules for
    higher-order primitives (``pjit``, ``cond``, ``scan``...) can evaluate their bodies.
    """

    def __init__(self, protocol: Protocol, eval_jaxpr: Callable, policy=None):
        self.protocol = protocol
        # the approximations of nonlinear functions (secjax.primitives.policy.Policy)
        self.policy = policy or DEFAULT_POLICY
        self.ring = protocol.ring
        self.eval_jaxpr = eval_jaxpr
        self.eqn_stack: list = []  # the equation being evaluated, innermost last
        self.producers: dict = {}
        self._shared: dict[int, tuple[Private, Secret]] = {}
        # intermediate results rules share within this evaluation (jnp.floor_divide takes
        # div and rem of the same operands: one long division), keyed by the rule's name and
        # its operands' identities; the entries hold the operands, so the ids stay theirs
        self.memo: dict = {}

    # -- where we are -----------------------------------------------------------------------
    @property
    def eqn(self):
        return self.eqn_stack[-1]

    @property
    def primitive(self) -> str:
        return self.eqn.primitive.name

    @property
    def source(self) -> str | None:
        """Where the current equation comes from: its innermost user frame and, when that
        lies in a library (Flax, transformers), the outermost frame of the user's own code.
        Equations inside library jits (``jnp.sort`` is one) carry no frame of their own, so
        the nearest enclosing call's frames are used."""
        for eqn in reversed(self.eqn_stack):
            frames = user_frames(eqn.source_info.traceback)
            if frames:
                return _describe_frames(frames)
        return None

    def site(self) -> tuple[str, str, str | None]:
        """``(label, scope, source)`` of the equation being evaluated: its primitive (or
        named function), its model scope and its source line (the range guard's sites)."""
        label, scope = self.protocol.runtime.cost.current_label()
        return label or "(inputs and outputs)", scope, self.source if self.eqn_stack else None

    @property
    def out_avals(self):
        return [v.aval for v in self.eqn.outvars]

    def producer(self, operand):
        """``(eqn, operand values)`` of the equation (in the same jaxpr) that computed
        ``operand`` (a variable, or the index of one of the current equation's operands), or
        None for inputs and literals. Lets a rule see patterns such as
        ``div(x, broadcast_in_dim(s))``: one reciprocal of ``s`` (:mod:`.patterns`)."""
        var = self.eqn.invars[operand] if isinstance(operand, int) else operand
        return self.producers.get(var) if not isinstance(var, Literal) else None

    def unsupported(self, reason: str) -> UnsupportedError:
        """An error naming the current primitive, ``reason`` and the user's source line."""
        return UnsupportedError(describe(self.primitive, reason, self.source))

    def encoding_error(self, reason: str) -> EncodingError:
        return EncodingError(describe(self.primitive, reason, self.source))

    # -- scales and encodings ---------------------------------------------------------------
    def scale(self, dtype) -> int:
        return scale_of(self.ring, dtype)

    def check_dtype(self, dtype) -> None:
        if not encodable(dtype):
            raise self.encoding_error(
                f"dtype {np.dtype(dtype)} has no ring encoding; secjax "
                "encodes booleans, integers and real floats"
            )

    def encode_public(self, value, scale: int):
        """Ring encoding of a public array, saturating constants too large for the ring
        (``finfo.min``). A float encoded at scale 0 (an integral multiplier) saturates as it
        would at ``frac_bits``, since its products with secrets land there."""
        self.check_dtype(value.dtype)
        frac = self.scale(value.dtype)
        if scale >= frac:
            return ring_ops.encode(self.ring, value, scale)
        return ring_ops.arshift(self.ring, ring_ops.encode(self.ring, value, frac), frac - scale)

    def secret(self, value: Value) -> Secret:
        """``value`` as a secret: public values are shared trivially (free), private ones are
        shared by their owner (once per value, however often it is used). Both are encoded
        like public constants: a value too large for the ring (an owner's ``finfo.min``
        mask) saturates. Private *inputs* were range-checked when they were passed in."""
        if isinstance(value, Secret):
            return value
        scale = self.scale(value.dtype)
        if isinstance(value, Public):
            shares = self.protocol.from_public(self.encode_public(value.value, scale))
            return Secret(shares, tuple(value.shape), np.dtype(value.dtype))
        cached = self._shared.get(id(value))
        if cached is not None:
            return cached[1]
        held = self.protocol.runtime.holds(value.owner)
        # A party process computes on another party's private values as zero placeholders
        # (shapes only); sharing uses the owner's value alone.
        clear = value.value if held else jnp.zeros(value.shape, value.dtype)
        shares = self.protocol.share(self.encode_public(clear, scale), value.owner)
        secret = Secret(shares, tuple(value.shape), np.dtype(value.dtype))
        self._shared[id(value)] = (value, secret)
        return secret

    def share(self, array, owner: int) -> Secret:
        """Encode an in-range input exactly and secret-share it from party ``owner``."""
        encoded = ring_ops.encode(self.ring, array, self.scale(array.dtype), saturate=False)
        return Secret(
            self.protocol.share(encoded, owner), tuple(np.shape(array)), np.dtype(array.dtype)
        )

    def ones(self, shape):
        """Shares of a public array of ones of ``shape`` (scale 0: as integers and bits)."""
        return self.protocol.from_public(np.ones(shape, self.ring.dtype))

    def make(self, shares, aval) -> Secret:
        """A secret with the shape and dtype of ``aval``."""
        return Secret(shares, tuple(aval.shape), np.dtype(aval.dtype))

    def deferred(self, compute, aval) -> Secret:
        """A secret with the shape and dtype of ``aval`` whose shares ``compute()`` gives when
        first used (its communication still counted under the current equation)."""
        cost = self.protocol.runtime.cost
        label = cost.current_label()

        def run():
            with cost.label(*label):
                return compute()

        return DeferredSecret(run, aval.shape, aval.dtype)

    def truncate(self, shares, bits: int, *, scale: int | None = None):
        """Drop ``bits`` fractional bits (after a product of two scaled values); a negative
        ``bits`` adds fractional bits instead (an integer times an integral constant that
        lands in a float, such as a one-hot row picker times a public table of integers).
        ``scale``: the fractional bits ``shares`` hold (for the range guard's messages)."""
        if bits < 0:
            return self.protocol.scale_up(shares, -bits)
        return self.protocol.trunc(shares, bits, scale=scale) if bits else shares

    def public_scale(self, value) -> int:
        """Scale at which to encode a public multiplier: integer-valued floats (masks, counts,
        finfo.min) at scale 0, so the product needs no truncation and cannot overflow."""
        if not jnp.issubdtype(value.dtype, jnp.floating):
            return 0
        as_float = np.asarray(value, dtype=np.float64)
        finite = np.isfinite(as_float)
        integral = np.all(np.where(finite, as_float == np.round(as_float), True))
        return 0 if integral else self.ring.frac_bits


_LIBRARY_DIRS = ("site-packages", "dist-packages", f"{os.sep}secjax{os.sep}")


def _describe_frames(frames) -> str:
    """``file:line (function)`` of the innermost frame, plus the user's own call site when
    the innermost frame is library code. ``frames`` run from innermost to outermost."""

    def show(frame):
        return f"{frame.file_name}:{frame.start_line} ({frame.function_name})"

    inner = frames[0]
    if not any(d in inner.file_name for d in _LIBRARY_DIRS):
        return show(inner)
    own = [f for f in frames if not any(d in f.file_name for d in _LIBRARY_DIRS)]
    return f"{show(inner)}, called from {show(own[-1])}" if own else show(inner)
