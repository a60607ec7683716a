"""The approximation interface of :mod:`secjax.primitives.approx` on secret fixed-point values.

A value is :class:`Fx`: protocol shares of a ring array together with its fixed-point scale
(fractional bits). Only protocol operations touch shares (``add``, ``sub``, ``neg``,
``add_public``, ``bilinear``, ``bilinear_public``, ``trunc``, ``msb``, ``local``,
``from_public``), so the same code runs under every protocol.

Comparisons are ``msb`` of a difference: exact as long as the difference, at its scale s, is
below 2^(ring_bits - 1 - s) in magnitude (2^(63-18) = 2^45 for floats at the defaults),
which every encodable value pair satisfies up to a factor of two. Several comparisons are
stacked along a new leading axis and sent through ONE ``msb`` call, and several products
through ONE ``bilinear`` call, so they cost one round.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math

import jax.numpy as jnp
import numpy as np

from secjax import ring as ring_ops
from secjax.protocols.base import MULTIPLY, Local
from secjax.values import Secret, Value, is_float


@dataclasses.dataclass(frozen=True)
class Fx:
    """Shares of a fixed-point array at ``scale`` fractional bits."""

    shares: object
    scale: int


def _unstack(x, *, n):
    return tuple(x[i] for i in range(n))


def _repeat(x, *, n):
    return jnp.broadcast_to(x[None], (n,) + x.shape)


def _weighted(bits, weights):
    w = weights.reshape(weights.shape + (1,) * (bits.ndim - 1))
    return jnp.sum(w * bits, axis=0, dtype=bits.dtype)


_WEIGHTED = Local(_weighted)


@functools.lru_cache(maxsize=4096)
def _encoded_constant(ring, data: bytes, shape: tuple, scale: int):
    """Ring encoding of the float64 constant ``data``: the approximations use the same few
    coefficients and thresholds in every layer, so each is checked and encoded once."""
    c = np.frombuffer(data, dtype=np.float64).reshape(shape)
    ring_ops.check_range(ring, c, scale)
    encoded = ring_ops.encode(ring, c, scale, saturate=False)
    encoded.flags.writeable = False  # shared by every caller
    return encoded


class SecureOps:
    """The approximation interface over one rule context's protocol."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.protocol = ctx.protocol
        self.ring = ctx.ring
        self.frac_bits = ctx.ring.frac_bits

    # -- entering and leaving ---------------------------------------------------------------
    def enter(self, value: Value) -> Fx:
        secret = self.ctx.secret(value)
        return Fx(secret.shares, self.ctx.scale(secret.dtype))

    def leave(self, x: Fx, aval) -> Secret:
        return self.ctx.make(self.rescale(x, self.ctx.scale(aval.dtype)).shares, aval)

    def shape(self, x: Fx) -> tuple:
        return self.protocol.logical_shape(x.shares)

    def masked_afterwards(self):
        """A context for values that are multiplied by 0 wherever they may pass a ring
        bound: the range guard checks nothing inside (see
        :meth:`secjax.protocols.ranges.RangeMonitor.suspended`)."""
        monitor = self.protocol.monitor
        return monitor.suspended() if monitor is not None else contextlib.nullcontext()

    def _encode(self, c, scale: int):
        """A finite public constant of the algorithm at ``scale`` (which may exceed
        frac_bits: coefficients and normalisation factors are held finer)."""
        c = np.asarray(c, dtype=np.float64)
        return _encoded_constant(self.ring, c.tobytes(), c.shape, scale)

    def const(self, c, shape, scale: int | None = None) -> Fx:
        scale = self.frac_bits if scale is None else scale
        enc = np.broadcast_to(self._encode(c, scale), tuple(shape))
        return Fx(self.protocol.from_public(enc), scale)

    def rescale(self, x: Fx, scale: int) -> Fx:
        if scale == x.scale:
            return x
        if scale > x.scale:
            return Fx(self.protocol.scale_up(x.shares, scale - x.scale), scale)
        return Fx(
            self.protocol.trunc(x.shares, x.scale - scale, scale=x.scale, planned=True), scale
        )

    # -- affine maps (local) ----------------------------------------------------------------
    def _align(self, a: Fx, b: Fx):
        s = max(a.scale, b.scale)
        return self.rescale(a, s), self.rescale(b, s)

    def add(self, a: Fx, b: Fx) -> Fx:
        a, b = self._align(a, b)
        return Fx(self.protocol.add(a.shares, b.shares), a.scale)

    def sub(self, a: Fx, b: Fx) -> Fx:
        a, b = self._align(a, b)
        return Fx(self.protocol.sub(a.shares, b.shares), a.scale)

    def neg(self, a: Fx) -> Fx:
        return Fx(self.protocol.neg(a.shares), a.scale)

    def add_c(self, a: Fx, c) -> Fx:
        return Fx(self.protocol.add_public(a.shares, self._encode(c, a.scale)), a.scale)

    def mul_c(self, a: Fx, c) -> Fx:
        """a * c for a public constant: free for integers and for powers of two (a power
        2^-k only relabels the scale), one truncation otherwise."""
        c = np.asarray(c, dtype=np.float64)
        if c.ndim == 0 and c > 0 and math.log2(c) == round(math.log2(c)) and c < 1:
            return Fx(a.shares, a.scale - round(math.log2(c)))
        if np.all(c == np.round(c)):
            shares = self.protocol.bilinear_public(MULTIPLY, a.shares, self._encode(c, 0))
            return Fx(shares, a.scale)
        shares = self.protocol.bilinear_public(MULTIPLY, a.shares, self._encode(c, self.frac_bits))
        return Fx(
            self.protocol.trunc(
                shares, self.frac_bits, scale=a.scale + self.frac_bits, planned=True
            ),
            a.scale,
        )

    # -- products ----------------------------------------------------------------------------
    def _target(self, a: Fx, b: Fx, scale):
        return max(a.scale, b.scale) if scale is None else scale

    def mul(self, a: Fx, b: Fx, scale: int | None = None) -> Fx:
        """a * b, truncated to ``scale`` (default: the larger of the operands' scales)."""
        return self.mul_many([(a, b)], scale)[0]

    def mul_many(self, pairs, scale: int | None = None) -> list[Fx]:
        """Products of several pairs; pairs of one shape and scales go in ONE bilinear call."""
        out: list = [None] * len(pairs)
        groups: dict = {}
        for i, (a, b) in enumerate(pairs):
            key = (self.shape(a), self.shape(b), a.scale, b.scale)
            groups.setdefault(key, []).append(i)
        for (_, _, sa, sb), idx in groups.items():
            target = self._target(pairs[idx[0]][0], pairs[idx[0]][1], scale)
            excess = sa + sb - target
            if len(idx) == 1:
                a, b = pairs[idx[0]]
                left, right = a.shares, b.shares
            else:
                left = self.protocol.stack(*[pairs[i][0].shares for i in idx])
                right = self.protocol.stack(*[pairs[i][1].shares for i in idx])
            prod = self.protocol.bilinear(
                MULTIPLY, left, right, trunc_bits=max(excess, 0), scale=sa + sb, planned=True
            )
            prods = (
                [prod]
                if len(idx) == 1
                else list(
                    self.protocol.local(
                        Local.of(_unstack, n=len(idx)),
                        prod,
                        over=self.protocol.logical_shape(prod)[1:],
                    )
                )
            )
            for i, shares in zip(idx, prods):
                value = Fx(shares, sa + sb - max(excess, 0))
                out[i] = self.rescale(value, target)
        return out

    # -- comparisons and bits ----------------------------------------------------------------
    def ge(self, x: Fx, consts) -> Fx:
        """Stacked bits [x >= c] for public constants ``consts``: ONE msb call."""
        n = len(consts)
        repeated = self.protocol.local(Local.of(_repeat, n=n), x.shares, over=self.shape(x))
        shape = self.shape(x)
        offsets = np.stack([np.broadcast_to(self._encode(-c, x.scale), shape) for c in consts])
        below = self.protocol.msb(self.protocol.add_public(repeated, offsets))
        ones = self.protocol.from_public(np.ones((n,) + shape, self.ring.dtype))
        return Fx(self.protocol.sub(ones, below), 0)

    def take(self, bits: Fx, i: int) -> Fx:
        return Fx(self.protocol.index(bits.shares, i), bits.scale)

    def bits_lin(self, bits: Fx, weights, base, scale) -> Fx:
        """base + sum_i weights[i] * bits[i], at ``scale`` (default frac_bits): local."""
        scale = self.frac_bits if scale is None else scale
        w = self._encode(np.asarray(weights, dtype=np.float64), scale)
        shares = self.protocol.local(
            _WEIGHTED,
            bits.shares,
            w,
            shared=(True, False),
            over=self.protocol.logical_shape(bits.shares)[1:],
        )
        return Fx(self.protocol.add_public(shares, self._encode(base, scale)), scale)

    def table(self, bits: Fx, vals, scale) -> Fx:
        """vals[k] where k is the number of set bits of the (monotone) stacked ``bits``:
        vals[0] + sum_i bits[i] (vals[i+1] - vals[i]), the differences taken between the
        ENCODED values so the sum telescopes exactly to each encoded entry. Local."""
        scale = self.frac_bits if scale is None else scale
        encoded = self._encode(np.asarray(vals, dtype=np.float64), scale)
        steps = encoded[1:] - encoded[:-1]
        shares = self.protocol.local(
            _WEIGHTED,
            bits.shares,
            steps,
            shared=(True, False),
            over=self.protocol.logical_shape(bits.shares)[1:],
        )
        return Fx(self.protocol.add_public(shares, encoded[0]), scale)

    def mask_many(self, terms) -> list[Fx]:
        return self.mul_many(terms)

    # -- polynomials -------------------------------------------------------------------------
    def powers(self, u: Fx, degree: int) -> list[Fx]:
        """[u, u^2, ..., u^degree] in ceil(log2 degree) rounds of batched products."""
        pw = {1: u}
        level = 1
        while level < degree:
            ks = [k for k in range(level + 1, min(2 * level, degree) + 1)]
            prods = self.mul_many([(pw[level], pw[k - level]) for k in ks])
            pw.update(zip(ks, prods))
            level *= 2
        return [pw[k] for k in range(1, degree + 1)]

    def polys(self, u: Fx, polys, scale: int | None = None) -> list[Fx]:
        """Several polynomials of u from one set of powers, at ``scale`` (default
        frac_bits); each is ONE public linear combination, truncated once.

        The powers are taken of v = u 2^t (a relabelling: free) at one working scale q, the
        shift t chosen by :func:`plan_powers` so that the ring error tracks the float error:
        a piece much narrower than u's range gets powers of v that are not tiny on it.
        Coefficients are held as fine as each polynomial's peak allows.

        Degrees above 4 are split once (Paterson and Stockmeyer, 1973):
        p = A(v) + v^h B(v) with h = ceil(d / 2), so only v .. v^h are computed; B is
        truncated to q, and A (coefficients at q) and v^h B, both at 2q, are added and
        truncated together: 2 truncations and h products instead of d - 1 of each (degree
        7: 2 and 4 against 6 and 6), where the plan shows that 2q leaves room for p."""
        scale = self.frac_bits if scale is None else scale
        degree = max(len(protocol.coeffs) - 1 for protocol in polys)
        if degree == 0:
            return [self.const(protocol.coeffs[0], self.shape(u), scale) for protocol in polys]
        plan = plan_powers(tuple(polys), self.ring.bits)
        v = self.rescale(Fx(u.shares, u.scale - plan.shift), plan.power_scale)
        top = degree if degree <= 4 or not plan.split_fits else -(-degree // 2)
        powers = self.powers(v, top)
        out = []
        for poly, coeff_scale, high_scale in zip(polys, plan.coeff_scales, plan.high_scales):
            a = [c * 2.0 ** (-plan.shift * k) for k, c in enumerate(poly.coeffs)]  # in v
            if len(a) == 1:
                out.append(self.const(a[0], self.shape(u), scale))
            elif len(a) - 1 <= top:
                out.append(self.rescale(self._combine(powers, a, coeff_scale), scale))
            else:
                b = self.rescale(self._combine(powers, a[top:], high_scale), plan.power_scale)
                low = self._combine(powers, a[:top], plan.power_scale)
                product = self.mul(powers[top - 1], b, scale=2 * plan.power_scale)
                out.append(self.rescale(self.add(low, product), scale))
        return out

    def _combine(self, powers: list[Fx], a, coeff_scale: int) -> Fx:
        """sum_k a[k] v^k from the powers v .. v^(len(a) - 1) (all at one scale q): a local
        public combination at scale q + ``coeff_scale``, not truncated."""
        q = powers[0].scale
        stacked = self.protocol.stack(*[protocol.shares for protocol in powers[: len(a) - 1]])
        value = self.bits_lin(Fx(stacked, q), a[1:], 0.0, coeff_scale)
        return self.add_c(Fx(value.shares, q + coeff_scale), a[0])

    # -- scales the ring allows --------------------------------------------------------------
    def fine_scale(self, bound: float) -> int:
        """The finest scale s at which a product of two values at s, of magnitude below
        ``bound``, still fits the ring before its truncation (|p| 2^(2s) < 2^(bits-2), the
        range in which every protocol's truncation is exact)."""
        return math.floor((self.ring.bits - 2 - math.log2(bound)) / 2)

    def cofactor_scale(self, x: Fx, bound: float) -> int:
        """The finest scale for a public factor c such that x c, of magnitude below
        ``bound``, fits the ring at the product's scale."""
        return self.ring.bits - 2 - x.scale - math.ceil(math.log2(bound))

    def ceiling(self) -> float:
        """Largest result a function should return at frac_bits: 2^RESULT_HEADROOM_BITS of
        them still add up inside the range where truncation is exact."""
        return 2.0 ** (self.ring.bits - 2 - self.frac_bits - RESULT_HEADROOM_BITS)

    def normalise_range(self, q) -> tuple[int, int]:
        """(emin, emax) of the normalisation policy ``q`` within what the ring resolves:
        2^emin no finer than one unit at frac_bits, and 2^-(emax+1) exact at the scale
        ``cofactor_scale`` gives the normalising factor (bits - 2 - frac_bits)."""
        return max(q.emin, -self.frac_bits), min(q.emax, self.ring.bits - 3 - self.frac_bits)


# A nonlinear result at frac_bits stays this many bits below the edge of exact truncation.
RESULT_HEADROOM_BITS = 4


@dataclasses.dataclass(frozen=True)
class PowerPlan:
    """How :meth:`SecureOps.polys` holds its powers: of v = u 2^shift, at ``power_scale``;
    polynomial i's coefficients at ``coeff_scales[i]``; ``error`` is the predicted worst
    absolute error (in units of the polynomials' values) from the ring's rounding.
    ``split_fits``: the polynomials of degree above 4 are split (Paterson-Stockmeyer), their
    values held at twice the power scale; ``high_scales[i]``: the coefficient scale of the
    upper part B of polynomial i (None where it is not split)."""

    shift: int
    power_scale: int
    coeff_scales: tuple
    error: float
    split_fits: bool
    high_scales: tuple


# The least power scale, and coefficient scale of the upper part, of a split polynomial.
MIN_SPLIT_SCALE = 20


def _peak(coeffs, span: float) -> float:
    """Bound of |sum_k coeffs[k] v^k| for |v| <= span."""
    return sum(abs(a) * span**k for k, a in enumerate(coeffs))


def _log2_ceil(x: float) -> int:
    return math.ceil(math.log2(max(x, 2.0**-30)) + 1e-9)


def _plan_for_shift(polys, bits: int, shift: int) -> PowerPlan:
    """The plan for one shift: powers as fine as the widest piece's growth allows (every
    product of powers below 2^(bits-2) on the pieces that use it), coefficients as fine as
    each polynomial's peak allows, and the error this predicts: per power, its rounding
    (about k max(V,1)^(k-1) 2^-q for v^k, |v| <= V) times its coefficient, plus each
    coefficient's own rounding times the power's size. Degrees above 4 are split when the
    value at 2q, with q lowered for it if need be, keeps at least MIN_SPLIT_SCALE bits."""
    spans = [(protocol.ubound * 2.0**shift, len(protocol.coeffs) - 1) for protocol in polys]
    coeffs = [
        [abs(a) * 2.0 ** (-shift * k) for k, a in enumerate(protocol.coeffs)] for protocol in polys
    ]
    growth = max(d * math.log2(max(span, 1.0)) for span, d in spans)
    q = math.floor((bits - 2 - growth) / 2)
    degree = max(d for _, d in spans)
    split_at = -(-degree // 2)
    split = [d > split_at for _, d in spans] if degree > 4 else [False] * len(polys)
    if any(split):
        room = max(_log2_ceil(_peak(c, span)) for c, (span, _), s in zip(coeffs, spans, split) if s)
        q_split = min(q, math.floor((bits - 3 - room) / 2))
        highs = [
            bits - 2 - q_split - _log2_ceil(_peak(c[split_at:], span)) if s else None
            for c, (span, _), s in zip(coeffs, spans, split)
        ]
        if q_split >= MIN_SPLIT_SCALE and all(h is None or h >= MIN_SPLIT_SCALE for h in highs):
            return _plan_at(coeffs, spans, bits, shift, q_split, tuple(highs))
    return _plan_at(coeffs, spans, bits, shift, q, (None,) * len(polys))


def _plan_at(coeffs, spans, bits, shift, q, high_scales) -> PowerPlan:
    coeff_scales, error = [], 0.0
    for c, (span, _) in zip(coeffs, spans):
        cs = bits - 2 - q - _log2_ceil(_peak(c, span))
        coeff_scales.append(cs)
        top = max(span, 1.0)
        rounding = sum(a * k * top ** (k - 1) for k, a in enumerate(c)) * 2.0**-q
        weights = sum(top**k for k in range(1, len(c))) * 2.0 ** -(cs + 1)
        error = max(error, rounding + weights)
    split_fits = any(h is not None for h in high_scales)
    return PowerPlan(shift, q, tuple(coeff_scales), error, split_fits, high_scales)


@functools.lru_cache(maxsize=None)
def plan_powers(polys: tuple, bits: int) -> PowerPlan:
    """The shift (-8..16) with the least predicted error (:func:`_plan_for_shift`)."""
    return min(
        (_plan_for_shift(polys, bits, t) for t in range(-8, 17)), key=lambda plan: plan.error
    )


def require_float_output(ctx) -> None:
    """A clear error unless the current equation's output is a float (approximations of
    real functions have no integer form)."""
    dtype = ctx.out_avals[0].dtype
    if not is_float(dtype):
        raise ctx.unsupported(f"{ctx.primitive} of a secret needs a floating dtype, got {dtype}")


def run_approx(ctx, x, algorithm):
    """Apply ``algorithm(ops, fx)`` (a description of :mod:`secjax.primitives.approx`) to the
    value ``x`` under the session's protocol: a secret of the current equation's output,
    which must be a float."""
    require_float_output(ctx)
    ops = SecureOps(ctx)
    return ops.leave(algorithm(ops, ops.enter(x)), ctx.out_avals[0])
