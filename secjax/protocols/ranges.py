"""The range guard: the magnitudes that reach truncations, products and comparisons.

The probabilistic truncation of aby3 and semi2k (:mod:`secjax.protocols.common`) is correct
only for ``|x| < 2^(k-2)``. Past that it returns ``x / 2^d - 2^(k-d)`` (or ``+``) for an
element ``x`` with probability ``(|x| - 2^(k-2)) / 2^(k-1)`` over the mask, and the right
value otherwise: a large error that no single run reliably shows. A product whose true
value reaches ``2^(k-1)`` wraps the ring under every protocol, ``plain`` included.

A :class:`RangeMonitor` is attached to a protocol where the values can be seen (the
emulator: ``plain``, ideal mode and the emulated real protocols), and checks every
truncation's input and every product against its bound. ``"raise"`` stops at the first
value past a bound with a :class:`~secjax.errors.RangeError` naming the equation, its source
line, the magnitude and the bound; ``"count"`` lets the protocol behave as it does and counts
the elements past each bound (with the expected number of wrong results); ``"record"`` also
keeps every site's peak for the range report (:mod:`secjax.ranges`). Party processes never
see values and run no guard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from secjax import ring as ring_ops
from secjax.errors import RangeError, RangeWarning, describe
from secjax.ring import Ring

GUARD_MODES = ("raise", "count", "off")

# Products of ordinary values (activations of a few tens, |x y| up to 2^10) must fit
# below the truncation's bound: a configuration that leaves less is warned about.
ORDINARY_PRODUCT_BITS = 10

TRUNCATION = "truncation"
SAFE_TRUNCATION = "safe truncation"
PRODUCT = "product"
COMPARISON = "comparison"


@dataclasses.dataclass
class Site:
    """One place in the program (an equation's rule, a kind of check) and what reached it.

    ``peak``: the largest magnitude seen, in ring units; ``bound_bits``: log2 of the bound it
    must stay below; ``scale``: the fractional bits of the checked value, when known;
    ``past``: elements at or past the bound; ``expected_wrong``: for a probabilistic
    truncation, the expected number of those the real protocols get wrong (every one for
    a product that wraps the ring); ``planned``: a step inside an approximation whose scale
    the rule chose to fill the ring up to the bound for the inputs it allows, so that
    little headroom there is by design.
    """

    kind: str
    label: str
    scope: str
    source: str | None
    bound_bits: int
    scale: int | None = None
    peak: float = 0.0
    elements: int = 0
    past: int = 0
    expected_wrong: float = 0.0
    calls: int = 0
    planned: bool = False

    @property
    def headroom(self) -> float:
        """Bits between the peak and the bound (negative: past it)."""
        if self.peak <= 0:
            return float(self.bound_bits)
        return self.bound_bits - math.log2(self.peak)

    def real(self, magnitude: float) -> float | None:
        """``magnitude`` (ring units) as a real number, when the scale is known."""
        return None if self.scale is None else magnitude * 2.0**-self.scale


class RangeMonitor:
    """Checks the values that reach bounded protocol steps (see the module docstring).

    ``locate()`` returns ``(label, scope, source)`` of the equation being evaluated.
    """

    def __init__(self, ring: Ring, mode: str, locate: Callable[[], tuple]):
        if mode not in ("raise", "count", "record"):
            raise ValueError(f"range guard mode {mode!r}; choose 'raise', 'count' or 'record'")
        self.ring = ring
        self.mode = mode
        self.locate = locate
        self.sites: dict[tuple, Site] = {}
        self._suspended = 0

    @contextlib.contextmanager
    def suspended(self):
        """Check nothing inside: for values that are multiplied by 0 wherever they could be
        past a bound (a piecewise approximation evaluates every piece's polynomial at
        every element, and each element keeps only the piece of its own interval, where
        the polynomial's scales fit by construction)."""
        self._suspended += 1
        try:
            yield
        finally:
            self._suspended -= 1

    # -- what protocols report -----------------------------------------------------------
    def truncation(
        self,
        value,
        *,
        safe: bool,
        nonnegative: bool = False,
        scale: int | None = None,
        planned: bool = False,
    ) -> None:
        """``value``: the ring elements about to be truncated, by the safe truncation or
        the probabilistic one (for ``nonnegative`` values: correct up to 2^(k-1));
        ``planned``: see :class:`Site`."""
        k = self.ring.bits
        if safe:  # correct on the whole ring: only recorded for the range report
            self._check(
                SAFE_TRUNCATION, self._magnitude(value), k - 1, scale, planned, wrong=np.zeros(())
            )
        elif nonnegative:  # a negative value here is a square that wrapped the ring
            signed = self._signed(value)
            self._check(
                PRODUCT,
                np.abs(signed),
                k - 1,
                scale,
                planned,
                wrong=(signed < 0).astype(np.float64),
            )
        else:
            magnitude = self._magnitude(value)
            self._check(
                TRUNCATION,
                magnitude,
                k - 2,
                scale,
                planned,
                wrong=_failure_probability(magnitude, k),
            )

    def product(
        self,
        op,
        a,
        b,
        product,
        *,
        truncated: bool,
        safe: bool = False,
        nonnegative: bool = False,
        scale: int | None = None,
        planned: bool = False,
        width: int | None = None,
    ) -> None:
        """A product ``op(a, b)`` of ring values ``a`` and ``b`` whose ring value is
        ``product``; ``truncated``: it goes on to a probabilistic truncation (``safe``: to
        the safe one; ``nonnegative``: a square, correct up to 2^(k-1)); ``width``: it was
        computed in the narrower ring ``Z_2^width``, which it wraps from ``2^(width-1)``."""
        k = width or self.ring.bits
        magnitude = self._magnitude(product)
        if not _fits(op, a, b, self.ring, k):
            magnitude = np.abs(_float_product(op, self._signed(a), self._signed(b)))
        wraps = magnitude >= 2.0 ** (k - 1)
        if truncated and not safe and not nonnegative:
            wrong = np.where(wraps, 1.0, _failure_probability(magnitude, k))
            self._check(TRUNCATION, magnitude, k - 2, scale, planned, wrong=wrong)
        else:  # untruncated, safe, or a square (correct up to 2^(k-1)): only wraps fail
            self._check(PRODUCT, magnitude, k - 1, scale, planned, wrong=wraps)

    def comparison(self, value) -> None:
        """An operand of a sign test: recorded for the range report (a ring element has a
        sign whatever its magnitude, so nothing here can be past a bound)."""
        if self.mode == "record":
            self._check(
                COMPARISON,
                self._magnitude(value),
                self.ring.bits - 1,
                None,
                False,
                wrong=np.zeros(()),
            )

    # -- bookkeeping -----------------------------------------------------------------------
    def _signed(self, x) -> np.ndarray:
        return np.asarray(x).view(self.ring.signed_dtype).astype(np.float64)

    def _magnitude(self, x) -> np.ndarray:
        return np.abs(self._signed(x))

    def _check(self, kind, magnitude, bound_bits, scale, planned, *, wrong) -> None:
        if self._suspended:
            return
        past = np.broadcast_to(wrong > 0, magnitude.shape)  # a chance of a wrong result
        n_past = int(np.count_nonzero(past))
        if not n_past and self.mode != "record":
            return
        label, scope, source = self.locate()
        site = self.sites.setdefault(
            (kind, label, scope, source, bound_bits, planned),
            Site(kind, label, scope, source, bound_bits, scale, planned=planned),
        )
        site.calls += 1
        site.elements += int(magnitude.size)
        site.peak = max(site.peak, float(np.max(magnitude, initial=0.0)))
        site.past += n_past
        site.expected_wrong += float(np.sum(np.where(past, wrong, 0.0)))
        if n_past and self.mode == "raise":
            raise RangeError(describe(label, explain(site, self.ring), source))

    @property
    def out_of_range(self) -> list[Site]:
        """The sites where some element reached or passed its bound, in program order."""
        return [site for site in self.sites.values() if site.past]


def product_range_bits(ring: Ring) -> int:
    """log2 of the magnitude below which a product of two values at ``frac_bits`` is
    truncated correctly: |x y| 2^(2f) < 2^(k-2)."""
    return ring.bits - 2 - 2 * ring.frac_bits


def warn_if_narrow(ring: Ring) -> None:
    """Warn when ``ring``'s fractional bits leave products of ordinary values no room."""
    bits = product_range_bits(ring)
    if bits < ORDINARY_PRODUCT_BITS:
        widest = (ring.bits - 2 - ORDINARY_PRODUCT_BITS) // 2
        warnings.warn(
            RangeWarning(
                f"frac_bits={ring.frac_bits} in a {ring.bits}-bit ring truncates a product of two "
                f"values correctly only while |x * y| < 2^{bits} = {2**bits}: ordinary "
                f"activations pass that. frac_bits <= {widest} keeps products up to "
                f"2^{ORDINARY_PRODUCT_BITS} = {2**ORDINARY_PRODUCT_BITS}; the emulator's "
                "range guard stops any value past the bound"
            ),
            stacklevel=_caller_level(),
        )


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside secjax (and generated ``__init__``s),
    so that a warning points at the user's line."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE_DIR) or frame.f_code.co_filename == "<string>"
    ):
        frame, level = frame.f_back, level + 1
    return level


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def explain(site: Site, ring: Ring) -> str:
    """Why the values at ``site`` are a problem and what to do about it."""
    k, d = ring.bits, ring.frac_bits
    real = site.real(site.peak)
    where = f" in scope {site.scope!r}" if site.scope else ""
    seen = (
        f"reaches {site.peak:.3g} ring units (2^{math.log2(site.peak):.1f}"
        + (f"; {real:.3g} at {site.scale} fractional bits" if real is not None else "")
        + ")"
    )
    bound = f"2^{site.bound_bits} = {2.0**site.bound_bits:.3g}"
    tools = (
        "`f.ranges(*args)` lists every site and the largest frac_bits that fits, and "
        "Config(range_guard='count') runs on and counts instead"
    )
    if site.kind == TRUNCATION:
        error = "" if site.scale is None else f" ({2.0 ** (k - site.scale):.3g})"
        safe = f"({site.scope!r},)" if site.scope else "True"
        return (
            f"a truncation's input{where} {seen}, past the bound {bound} within which "
            f"the probabilistic truncation of aby3 and semi2k is correct: they would "
            f"return {site.expected_wrong:.3g} of these {site.elements} elements (in "
            f"expectation) off by 2^(k-d) ring units{error}. Fixes: the safe truncation "
            f"for this scope (Config(safe_truncation={safe})), fewer fractional bits "
            f"than {d}, or smaller values; {tools}"
        )
    width = site.bound_bits + 1
    narrow = (
        f" (a gather at secret or private positions from a large table computes its one-hot "
        f"product in a {width}-bit ring; Config(narrow_lookups=False) keeps it in the "
        f"{k}-bit ring)"
        if width < k
        else ""
    )
    return (
        f"a product{where} {seen}, past {bound}: it wraps the {width}-bit ring{narrow}, and "
        f"every protocol returns a wrong value. Fixes: fewer fractional bits than {d} (each "
        f"one doubles a product's room), or smaller values; {tools}"
    )


def _failure_probability(magnitude, k: int):
    """The chance that the probabilistic truncation (offset 2^(k-2)) of an element of
    ``magnitude`` is off by 2^(k-d): 0 up to 2^(k-2), then (|x| - 2^(k-2)) / 2^(k-1)."""
    return np.clip((magnitude - 2.0 ** (k - 2)) / 2.0 ** (k - 1), 0.0, 1.0)


def _fan_in(op, a_shape, b_shape) -> int | None:
    """The number of products summed into each output of ``op`` (an upper bound), or None
    for a map this module does not know."""
    if op.fn is jnp.multiply:
        return 1
    params = dict(op.params)
    if op.fn is ring_ops.dot_general:
        (contract, _), _ = params["dimension_numbers"]
        return math.prod(a_shape[i] for i in contract)
    if op.fn is ring_ops.conv_general_dilated:
        dn = jax.lax.conv_dimension_numbers(a_shape, b_shape, params.get("dimension_numbers"))
        return math.prod(b_shape[i] for i in dn.rhs_spec[1:])
    return None


def _fits(op, a, b, ring: Ring, bits: int) -> bool:
    """Whether ``op(a, b)`` of values in ``ring`` certainly stays below ``2^(bits-1)``, by
    the fan-in and the peaks."""
    fan_in = _fan_in(op, np.shape(a), np.shape(b))
    if fan_in is None:
        return False
    if not np.size(a) or not np.size(b):
        return True
    signed = ring.signed_dtype
    peak_a = float(np.max(np.abs(np.asarray(a).view(signed).astype(np.float64))))
    peak_b = float(np.max(np.abs(np.asarray(b).view(signed).astype(np.float64))))
    return fan_in * peak_a * peak_b < 2.0 ** (bits - 1)


def _float_product(op, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``op`` on float64 values: the true product, unwrapped (to float64's precision)."""
    params = dict(op.params)
    if op.fn is jnp.multiply:
        return np.multiply(a, b)
    if op.fn is ring_ops.dot_general:
        return np.asarray(jax.lax.dot_general(a, b, params["dimension_numbers"]))
    if op.fn is ring_ops.conv_general_dilated:
        return np.asarray(jax.lax.conv_general_dilated(a, b, **params))
    return np.asarray(op(a, b))  # another map of jax.numpy functions: run it on floats
