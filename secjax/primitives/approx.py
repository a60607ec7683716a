"""MPC-friendly approximations of nonlinear functions, written ONCE against a small numeric
interface so that the same description runs securely and in the clear.

An algorithm here is a function ``algo(o, x, policy)`` whose only arithmetic is the
interface ``o``:

- :class:`FloatOps` (this module): ordinary JAX float arithmetic. ``secjax.nn.gelu(x)`` and
  friends are the algorithms run on it, for fine-tuning in plaintext with exactly the function
  that runs securely (it differs from the secure result only by fixed-point rounding).
- :class:`secjax.primitives.secure_ops.SecureOps`: fixed-point values shared under the
  session's protocol, built only on protocol operations (add, bilinear, trunc, msb).

The interface: ``add sub neg add_c mul_c`` (affine maps), ``mul mul_many`` (products),
``ge(x, consts)`` (stacked 0/1 bits ``[x >= c]`` for public constants, ONE batched
comparison), ``take(bits, i)``, ``bits_lin(bits, weights, base, scale)`` (a public affine
combination of bits: free), ``table(bits, vals, scale)`` (vals[k] for the count k of
set monotone bits: free), ``mask_many([(bit, v)])`` (``v`` where the bit is set, else 0;
batched), ``polys(u, specs, scale)`` (several polynomials sharing one set of powers), and
what the ring allows, so that no constant of an algorithm assumes one configuration:
``fine_scale(bound)`` (the finest scale of two factors whose product stays below
``bound``), ``cofactor_scale(x, bound)``, ``ceiling()`` (the largest result worth
returning), ``normalise_range(q)`` (the exponents the ring resolves); in the clear these
are None, inf and the policy's own values.

Polynomial coefficients are fitted here from the policy's parameters (ranges, degrees) by
:func:`fit_poly`: iteratively reweighted least squares (Lawson's algorithm, which converges to
the minimax fit) on 4001 equispaced points, in float64, cached. They are deterministic.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math

import jax.numpy as jnp
import numpy as np

from secjax.primitives.policy import (
    ExpPolicy,
    GeluPolicy,
    LogPolicy,
    NormalisePolicy,
    OddSigmoidPolicy,
    ReciprocalPolicy,
    RsqrtPolicy,
    SiluPolicy,
    SoftmaxPolicy,
)
from secjax.runtime.kernels import default_cache

# -- fitted polynomials ---------------------------------------------------------------------


def _erf(x):
    from scipy.special import erf

    return erf(x)


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _silu(x):
    return x / (1.0 + np.exp(-x))


TARGETS = {
    "exp": np.exp,
    "log": np.log,
    "tanh": np.tanh,
    "erf": _erf,
    "gelu": _gelu,
    "silu": _silu,
    "rsqrt": lambda x: 1.0 / np.sqrt(x),
    "sin_pi": lambda x: np.sin(np.pi * x),
    "atan": np.arctan,
}


@functools.lru_cache(maxsize=None)
def fit_poly(
    target: str,
    lo: float,
    hi: float,
    powers: tuple,
    radius: float = 1.0,
    points: int = 4001,
    iterations: int = 200,
) -> tuple[float, ...]:
    """Coefficients (index = power of u = x / radius, 0 where a power is unused) of the
    near-minimax polynomial in the given ``powers`` fitting ``TARGETS[target]`` on [lo, hi].
    Kept in the disk cache: a fit takes about a tenth of a second, a model needs several."""
    args = (target, lo, hi, tuple(powers), radius, points, iterations)
    return default_cache().remembered(f"fit_poly{args!r}", lambda: _fit_poly(*args))


def _fit_poly(target, lo, hi, powers, radius, points, iterations) -> tuple[float, ...]:
    x = np.linspace(lo, hi, points)
    y = TARGETS[target](x)
    u = x / radius
    basis = np.stack([u**k for k in powers], axis=1)
    weights = np.ones(points)
    for _ in range(iterations):  # Lawson: reweight by the residual, towards the minimax fit
        # least squares by QR (a third of the time of an SVD-based lstsq on a first call)
        q, r = np.linalg.qr(basis * weights[:, None])
        coef = np.linalg.solve(r, q.T @ (y * weights))
        residual = np.abs(basis @ coef - y)
        weights = weights * np.sqrt(residual + 1e-15)
        weights /= weights.max()
    out = [0.0] * (max(powers) + 1)
    for k, c in zip(powers, coef):
        out[k] = float(c)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Poly:
    """sum_k coeffs[k] * u^k, meaningful for |u| <= ubound (its segment)."""

    coeffs: tuple
    ubound: float

    def scaled(self, factor: float, offset: float = 0.0) -> "Poly":
        c = [factor * a for a in self.coeffs]
        c[0] += offset
        return Poly(tuple(c), self.ubound)

    def mirrored(self) -> "Poly":
        """q(u) = -p(-u): the odd continuation of ``p`` to the negative side."""
        return Poly(tuple(-a * (-1.0) ** k for k, a in enumerate(self.coeffs)), self.ubound)


IDENTITY = "identity"


@dataclasses.dataclass(frozen=True)
class Piecewise:
    """f(x) = pieces[k](x) on [breaks[k-1], breaks[k]) (breaks[-1] = -inf, breaks[m] = inf).

    A piece is a float constant, :data:`IDENTITY` (x itself) or a :class:`Poly` in
    u = x / radius (radius a power of two, so u is x at a higher scale: exact and free)."""

    breaks: tuple
    pieces: tuple
    radius: float

    def scaled(self, factor: float, offset: float = 0.0) -> "Piecewise":
        """factor * f + offset (identity pieces are not supported here)."""
        pieces = []
        for piece in self.pieces:
            if isinstance(piece, Poly):
                pieces.append(piece.scaled(factor, offset))
            elif piece == IDENTITY:
                raise ValueError("cannot scale an identity piece")
            else:
                pieces.append(factor * piece + offset)
        return Piecewise(self.breaks, tuple(pieces), self.radius)

    def stretched(self, factor: float) -> "Piecewise":
        """x -> f(x / factor) (factor a power of two)."""
        return Piecewise(tuple(b * factor for b in self.breaks), self.pieces, self.radius * factor)


def _radius(*bounds) -> float:
    return float(2.0 ** math.ceil(math.log2(max(abs(b) for b in bounds))))


def odd_sigmoid_pieces(target: str, policy: OddSigmoidPolicy) -> Piecewise:
    """tanh or erf: odd polynomial on [-inner, inner), a general one on [inner, outer) and its
    odd mirror on [-outer, -inner), +-1 beyond +-outer."""
    radius = _radius(policy.outer)
    odd = tuple(range(1, policy.degree + 1, 2))
    inner = Poly(fit_poly(target, -policy.inner, policy.inner, odd, radius), policy.inner / radius)
    outer = Poly(
        fit_poly(target, policy.inner, policy.outer, tuple(range(policy.degree + 1)), radius),
        policy.outer / radius,
    )
    return Piecewise(
        (-policy.outer, -policy.inner, policy.inner, policy.outer),
        (-1.0, outer.mirrored(), inner, outer, 1.0),
        radius,
    )


def logistic_pieces(policy: OddSigmoidPolicy) -> Piecewise:
    """logistic(x) = 0.5 + 0.5 tanh(x / 2): the tanh description, stretched and scaled."""
    return odd_sigmoid_pieces("tanh", policy).stretched(2.0).scaled(0.5, 0.5)


def gelu_phi_pieces(policy: GeluPolicy) -> Piecewise:
    """Phi with GeLU(x) = x * Phi(x), piecewise polynomial.

    "puma": GeLU is fitted (near-minimax) by polynomials WITHOUT constant term, of degree
    ``degrees[i]`` on [breaks[i], breaks[i + 1]); dividing by x gives Phi's pieces (one degree
    less). GeLU = 0 below breaks[0], x from breaks[-1]. Measured errors are stated in
    :class:`GeluPolicy`. "relu": Phi = [x >= 0]."""
    if policy.method == "relu":
        return Piecewise((0.0,), (0.0, 1.0), 1.0)
    radius = _radius(policy.breaks[0], policy.breaks[-1])
    pieces = []
    for lo, hi, degree in zip(policy.breaks, policy.breaks[1:], policy.degrees):
        c = fit_poly("gelu", lo, hi, tuple(range(1, degree + 1)), radius)
        # x * Phi(x) = sum_k c_k (x/R)^k  =>  Phi = sum_k (c_k / R) u^(k-1)
        pieces.append(Poly(tuple(a / radius for a in c[1:]), max(abs(lo), abs(hi)) / radius))
    return Piecewise(tuple(policy.breaks), (0.0, *pieces, 1.0), radius)


def silu_pieces(policy: SiluPolicy) -> Piecewise:
    """SiLU (PUMA-style): 0 below -b0, a polynomial of degree ``degrees[0]`` on [-b0, -b1),
    one of degree ``degrees[1]`` on [-b1, b1), x + (the first polynomial at -x) on [b1, b0)
    (SiLU(x) = x + SiLU(-x), so this piece costs no extra power), x above b0.

    PUMA's own split (x itself from 4 up) is off by 4 logistic(-4) = 0.072 just above 4,
    beyond the 0.015 bound, hence the mirrored piece up to b0."""
    if policy.method == "relu":
        return Piecewise((0.0,), (0.0, IDENTITY), 1.0)
    b0, b1 = policy.breaks
    radius = _radius(b0)
    left = fit_poly("silu", -b0, -b1, tuple(range(policy.degrees[0] + 1)), radius)
    mid = fit_poly("silu", -b1, b1, tuple(range(policy.degrees[1] + 1)), radius)
    right = [a * (-1.0) ** k for k, a in enumerate(left)] + [0.0]
    right[1] += radius  # + x = + radius * u
    return Piecewise(
        (-b0, -b1, b1, b0),
        (
            0.0,
            Poly(left, b0 / radius),
            Poly(mid, b1 / radius),
            Poly(tuple(right[: max(2, len(left))]), b0 / radius),
            IDENTITY,
        ),
        radius,
    )


# -- algorithms (the one description of each function) -------------------------------------


def piecewise(ops, x, pw: Piecewise):
    """Evaluate ``pw`` at x: one batched comparison against the breaks, shared powers, one
    batched masking product; constant pieces are free (public combinations of bits)."""
    m = len(pw.breaks)
    bits = ops.ge(x, list(pw.breaks))  # c_i = [x >= breaks[i]]
    u = ops.mul_c(x, 1.0 / pw.radius)
    polys = [piece for piece in pw.pieces if isinstance(piece, Poly)]
    # Every piece's polynomial at every element; each element keeps its own piece's only,
    # whose scales fit its interval, and the others' are multiplied by 0.
    with ops.masked_afterwards():
        values = iter(ops.polys(u, polys)) if polys else iter(())
    const_w, const_base, masked = np.zeros(m), 0.0, []
    for k, piece in enumerate(pw.pieces):
        w = np.zeros(m)  # segment k: c_{k-1} - c_k
        base = 1.0 if k == 0 else 0.0
        if k > 0:
            w[k - 1] += 1.0
        if k < m:
            w[k] -= 1.0
        if isinstance(piece, Poly):
            masked.append((ops.bits_lin(bits, w, base, 0), next(values)))
        elif piece == IDENTITY:
            masked.append((ops.bits_lin(bits, w, base, 0), x))
        elif piece != 0.0:
            const_w += piece * w
            const_base += piece * base
    out = None
    for v in ops.mask_many(masked):
        out = v if out is None else ops.add(out, v)
    if np.any(const_w) or const_base:
        consts = ops.bits_lin(bits, const_w, const_base, None)
        out = consts if out is None else ops.add(out, consts)
    return out


def _squaring_scales(ops, top: float, n: int) -> list:
    """Scales of r_0 .. r_n in exp's squarings r_(i+1) = r_i^2, r_n <= e^top: each r_i as
    fine as its square allows (the squarings double r's relative error n times, so r_0 is
    held well beyond frac_bits), r_n at frac_bits. All None in the clear."""
    return [ops.fine_scale(1.01 * math.exp(top * 2.0 ** (i + 1 - n))) for i in range(n)] + [
        ops.frac_bits
    ]


def exp(ops, x, policy: ExpPolicy, *, nonpositive: bool = False):
    """exp(x) = q(x_c / 2^n)^(2^n), x_c = clip(x, lo, hi); exactly 0 for x < lo.

    hi is lowered to log(o.ceiling()) where exp(hi) would not fit the ring with headroom
    (a 32-bit ring with 12 fractional bits saturates at exp(9.7)). ``nonpositive``: the
    caller knows x <= 0 (softmax after subtracting the row max), so only the lower clamp
    is compared."""
    policy = dataclasses.replace(
        policy, hi=0.0 if nonpositive else min(policy.hi, math.log(ops.ceiling()))
    )
    n = policy.nonpositive_squarings if nonpositive else policy.squarings
    degree = policy.nonpositive_degree if nonpositive else policy.degree
    consts = [policy.lo] if nonpositive else [policy.lo, policy.hi]
    bits = ops.ge(x, consts)
    above_lo = ops.take(bits, 0)
    below_lo = ops.bits_lin(bits, [-1.0] + [0.0] * (len(consts) - 1), 1.0, 0)
    terms = [(below_lo, ops.add_c(ops.neg(x), policy.lo))]
    if not nonpositive:
        terms.append((ops.take(bits, 1), ops.add_c(ops.neg(x), policy.hi)))
    clipped = x
    for v in ops.mask_many(terms):
        clipped = ops.add(clipped, v)
    scale = 2.0**-n
    q = Poly(
        fit_poly("exp", policy.lo * scale, policy.hi * scale, tuple(range(degree + 1))),
        max(abs(policy.lo), abs(policy.hi)) * scale,
    )
    scales = _squaring_scales(ops, policy.hi, n)
    r = ops.polys(ops.mul_c(clipped, scale), [q], scales[0])[0]
    for s in scales[1:]:
        r = ops.mul(r, r, scale=s)
    return ops.mask_many([(above_lo, r)])[0]


def quad_numerator(ops, x, policy: SoftmaxPolicy):
    """relu(x + c)^2: the numerator of MPCFormer's 2Quad softmax (see :class:`SoftmaxPolicy`).
    The ReLU (one comparison, one masking product) comes BEFORE the square, so a masked
    entry (saturated near -2^35) is 0 before it could overflow the ring."""
    shifted = ops.add_c(x, policy.c)
    relu = ops.mask_many([(ops.take(ops.ge(shifted, [0.0]), 0), shifted)])[0]
    return ops.mul(relu, relu)


# Products in the Newton steps on z in [0.5, 1) stay below 4; rsqrt's z / 2 is z relabelled
# one bit finer, so its products are held as if below 8.
NEWTON_BOUND = 8.0


def _normalise(ops, y, q: NormalisePolicy):
    """Comparison bits of y against 0, 2^emin, ..., 2^(emax+1) (ONE batched comparison)
    and z = y * 2^-(e+1) in [0.5, 1) for 2^emin <= y < 2^(emax+1); z is 0.5 for y < 0 and
    y >= 2^(emax+1), and in [0.5, 1) for 0 <= y < 2^emin. Returns (z, table, mids) where
    ``table(vals, scale)`` is the public function of the range y falls in, given as
    vals = [below 2^emin (y < 0 included), one value per e in ``mids``, at or above
    2^(emax+1)]: a public combination of the bits, free. emin and emax are narrowed to
    what the ring resolves (``o.normalise_range``); z is held at the working scale of
    values of the Newton steps (``o.fine_scale(NEWTON_BOUND)``), finer than frac_bits where
    the ring has room."""
    emin, emax = ops.normalise_range(q)
    q = dataclasses.replace(q, emin=emin, emax=emax)
    bits = ops.ge(y, [0.0] + [2.0**j for j in range(q.emin, q.emax + 2)])

    def table(vals, scale, negative=None):
        vals = [vals[0] if negative is None else negative] + list(vals)
        return ops.table(bits, vals, scale)

    mids = list(range(q.emin, q.emax + 1))  # e = floor(log2 y) in range
    inv = table(
        [2.0**-q.emin] + [2.0 ** -(e + 1) for e in mids] + [0.0],
        ops.cofactor_scale(y, 1.0),
        negative=0.0,
    )
    z = ops.mul(y, inv, scale=ops.fine_scale(NEWTON_BOUND))
    z = ops.add(z, table([0.5] + [0.0] * len(mids) + [0.5], ops.frac_bits))
    return q, z, table, mids


def reciprocal(ops, y, policy: ReciprocalPolicy, *, positive: bool = False, scale=None):
    """1/y (see :class:`ReciprocalPolicy`); ``positive``: the caller knows y >= 0; ``scale``:
    the result's (default frac_bits; softmax's normalisation holds it finer, since
    1/row-sum is small where the sum is large)."""
    q = policy.normalise
    if not positive:
        sign = ops.bits_lin(ops.ge(y, [0.0]), [2.0], -1.0, 0)  # +1 for y >= 0, else -1
        y = ops.mul(sign, y)
    q, z, table, mids = _normalise(ops, y, q)
    # w (< 2) and the table (<= 2^-emin) split the room of their product evenly
    s = ops.fine_scale(2.0 ** (2 - q.emin))
    w = ops.add_c(ops.mul_c(z, -2.0), 2.9142)
    for i in range(policy.iterations):
        w = ops.mul(
            w,
            ops.add_c(ops.neg(ops.mul(z, w)), 2.0),
            scale=s if i == policy.iterations - 1 else None,
        )
    r = ops.mul(
        w,
        table([2.0**-q.emin] + [2.0 ** -(e + 1) for e in mids] + [0.0], s),
        scale=ops.frac_bits if scale is None else scale,
    )
    return r if positive else ops.mul(sign, r)


def _rsqrt_normalised(ops, z, policy: RsqrtPolicy, scale):
    """1/sqrt(z) for z in [0.5, 1), its last product truncated to ``scale``."""
    guess = Poly(fit_poly("rsqrt", 0.5, 1.0, tuple(range(policy.degree + 1))), 1.0)
    w = ops.polys(z, [guess], ops.fine_scale(NEWTON_BOUND))[0]
    half_z = ops.mul_c(z, 0.5)
    for i in range(policy.iterations):
        w = ops.mul(
            w,
            ops.add_c(ops.neg(ops.mul(half_z, ops.mul(w, w))), 1.5),
            scale=scale if i == policy.iterations - 1 else None,
        )
    return w


def rsqrt(ops, y, policy: RsqrtPolicy):
    """1/sqrt(y) (see :class:`RsqrtPolicy`)."""
    q, z, table, mids = _normalise(ops, y, policy.normalise)
    s = ops.fine_scale(2.0 ** (2 - q.emin / 2))  # w (< 1.5) times the table (<= 2^(-emin/2))
    w = _rsqrt_normalised(ops, z, policy, s)
    return ops.mul(
        w,
        table([2.0 ** (-q.emin / 2)] + [2.0 ** (-(e + 1) / 2) for e in mids] + [0.0], s),
        scale=ops.frac_bits,
    )


def sqrt(ops, y, policy: RsqrtPolicy):
    """sqrt(y) = z rsqrt(z) 2^((e+1)/2) (see :class:`RsqrtPolicy`)."""
    q, z, table, mids = _normalise(ops, y, policy.normalise)
    top = 2.0 ** ((q.emax + 1) / 2) / math.sqrt(0.5)
    s = ops.fine_scale(4.0 * top)  # z rsqrt(z) (< 1) times the table (<= top)
    root = ops.mul(z, _rsqrt_normalised(ops, z, policy, None), scale=s)
    return ops.mul(
        root, table([0.0] + [2.0 ** ((e + 1) / 2) for e in mids] + [top], s), scale=ops.frac_bits
    )


def log(ops, y, policy: LogPolicy):
    """log(y) = P(4z - 3) + (e+1) ln 2, P fitted to log((u + 3) / 4) on [-1, 1]."""
    q, z, table, mids = _normalise(ops, y, policy.normalise)
    u = ops.add_c(ops.mul_c(z, 4.0), -3.0)
    coeffs = fit_poly("log", 0.5, 1.0, tuple(range(policy.degree + 1)), 0.25)
    # fit_poly fits in u' = x / 0.25 = 4x; shift to u = 4x - 3 by re-expanding.
    shifted = np.polynomial.polynomial.Polynomial(coeffs)(
        np.polynomial.polynomial.Polynomial([3.0, 1.0])
    )
    poly = Poly(tuple(float(c) for c in shifted.coef), 1.0)
    ln2 = math.log(2.0)
    return ops.add(
        ops.polys(u, [poly])[0],
        table([q.emin * ln2] + [(e + 1) * ln2 for e in mids] + [(q.emax + 2) * ln2], ops.frac_bits),
    )


# -- the plaintext backend ------------------------------------------------------------------


class FloatOps:
    """The interface on ordinary JAX float arrays (no fixed point, no secrecy)."""

    frac_bits = None

    def fine_scale(self, bound):
        return None

    def masked_afterwards(self):
        return contextlib.nullcontext()

    def cofactor_scale(self, x, bound):
        return None

    def ceiling(self):
        return math.inf

    def normalise_range(self, q):
        return q.emin, q.emax

    def add(self, a, b):
        return a + b

    def sub(self, a, b):
        return a - b

    def neg(self, a):
        return -a

    def add_c(self, a, c):
        return a + c

    def mul_c(self, a, c):
        return a * c

    def mul(self, a, b, scale=None):
        return a * b

    def mul_many(self, pairs):
        return [a * b for a, b in pairs]

    def ge(self, x, consts):
        return jnp.stack([(x >= c).astype(x.dtype) for c in consts])

    def take(self, bits, i):
        return bits[i]

    def bits_lin(self, bits, weights, base, scale):
        w = jnp.asarray(np.asarray(weights, dtype=np.float64), bits.dtype)
        return base + jnp.tensordot(w, bits, axes=1)

    def table(self, bits, vals, scale):
        """vals[k] where k = the number of set bits (the bits are monotone), looked up
        rather than summed as differences: in float32 those differences (2^16 - 2^-9 ...)
        would lose the small entries."""
        count = jnp.sum(bits, axis=0).astype(jnp.int32)
        return jnp.asarray(np.asarray(vals, dtype=np.float64), bits.dtype)[count]

    def mask_many(self, terms):
        return [jnp.where(bit > 0.5, v, jnp.zeros_like(v)) for bit, v in terms]

    def polys(self, u, polys, scale=None):
        return [sum(c * u**k for k, c in enumerate(poly.coeffs) if c) for poly in polys]
