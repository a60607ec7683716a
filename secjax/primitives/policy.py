"""The approximation policy: for every nonlinear function, the method and its parameters
(clamp ranges, polynomial degrees, Newton iterations, normalisation ranges).

One policy object drives both the secure rules (``secjax.primitives.transcendental``) and the
plaintext functions of ``secjax.nn`` (``secjax.nn.gelu(x)`` ...), so a model can be fine-tuned
in the clear with exactly the function that runs securely. Polynomial coefficients are not
stored here: they are fitted from these parameters, deterministically, by
:func:`secjax.primitives.approx.fit_poly` (cached), so changing a degree or a range here
changes both the secure and the plaintext function together.

The defaults meet these bounds at 18 fractional bits in a 64-bit ring (tests/test_nonlinear.py
asserts them): max |error| <= 0.01 or relative error <= 1% for exp, logistic, tanh, erf on
[-10, 10]; reciprocal on [-10, 10] without (-0.1, 0.1); log, sqrt, rsqrt on [0.01, 100];
softmax on rows of width 128 with values in [-30, 30]; GeLU and SiLU within 0.015 everywhere.

Other rings and fractional bits: every internal scale is derived from the ring
(``SecureOps.fine_scale`` and friends), never from these defaults, and
tests/test_nonlinear_configs.py states the tolerance per configuration. Where a ring cannot
hold a stated domain, it shrinks and saturates: exp's hi becomes at most
(bits - 6 - frac_bits) ln 2 (9.7 in a 32-bit ring with 12 fractional bits), and the
normalisation range becomes emin >= -frac_bits, emax <= bits - 3 - frac_bits.
"""

from __future__ import annotations

import dataclasses


def _check_method(policy, allowed: tuple) -> None:
    if policy.method not in allowed:
        raise ValueError(
            f"{type(policy).__name__}: unknown method {policy.method!r}; choose one of {allowed}"
        )


@dataclasses.dataclass(frozen=True)
class ExpPolicy:
    """exp(x) = p(x / 2^squarings)^(2^squarings) with p a degree-``degree`` polynomial fitted
    to exp on [lo, hi] / 2^squarings. Saturation: exp(x) = 0 exactly for x < lo (this is the
    softmax cut: entries with x - max < lo vanish), exp(x) = exp(hi) for x > hi.

    Where x <= 0 is known (softmax after subtracting the row max), p has degree
    ``nonpositive_degree``, is fitted on [lo, 0] / 2^n only and n = ``nonpositive_squarings``:
    the narrower fit is accurate with fewer squarings, each of which costs a product and a
    truncation. At the defaults (degree 8, 2 squarings) the float error on [-14, 0] is
    1.3e-6 absolute (a third of one unit at 18 fractional bits), against 3.9e-6 for the
    general (4, 6) on [-14, 12], and a softmax exp sends 210 instead of 276 bytes per element
    under aby3 in 29 instead of 38 rounds."""

    lo: float = -14.0
    hi: float = 12.0
    squarings: int = 6
    degree: int = 4
    nonpositive_squarings: int = 2
    nonpositive_degree: int = 8


@dataclasses.dataclass(frozen=True)
class NormalisePolicy:
    """Secret normalisation y = z * 2^(e+1), z in [0.5, 1), e = floor(log2 y) found by
    comparing y with 0 and the public powers 2^emin .. 2^(emax+1) in ONE batched msb call
    (emax - emin + 3 comparisons per element, 44 at the defaults). Accurate for
    2^emin <= |y| < 2^(emax+1); outside, each function saturates as its docstring states."""

    emin: int = -16
    emax: int = 24


@dataclasses.dataclass(frozen=True)
class ReciprocalPolicy:
    """1/y: normalise, initial guess 2.9142 - 2z on [0.5, 1), Newton w <- w (2 - z w).
    Saturation: 1/y = 0 for |y| >= 2^(emax+1); |1/y| <= 2^(1-emin) for |y| < 2^emin."""

    normalise: NormalisePolicy = NormalisePolicy()
    iterations: int = 3


@dataclasses.dataclass(frozen=True)
class RsqrtPolicy:
    """1/sqrt(y): normalise, linear minimax guess on [0.5, 1), Newton w <- w (3 - z w^2) / 2,
    times 2^(-(e+1)/2) (a public function of the comparison bits: no parity step). sqrt(y) is
    z * rsqrt(z) * 2^((e+1)/2). Saturation: rsqrt(y) = 0 for y >= 2^(emax+1) and at most
    2^(-emin/2) * sqrt(2) for y < 2^emin (y <= 0 included); sqrt(y) = 0 for y < 2^emin and
    sqrt(2^(emax+1)) for y >= 2^(emax+1)."""

    normalise: NormalisePolicy = NormalisePolicy()
    iterations: int = 2
    degree: int = 1


@dataclasses.dataclass(frozen=True)
class LogPolicy:
    """log(y) = p(z) + (e+1) ln 2 with p of degree ``degree`` fitted to log on [0.5, 1).
    Saturation: log(y) ~ (emin - 1) ln 2 for y < 2^emin (y <= 0 included) and
    (emax + 1) ln 2 for y >= 2^(emax+1)."""

    normalise: NormalisePolicy = NormalisePolicy()
    degree: int = 7


@dataclasses.dataclass(frozen=True)
class OddSigmoidPolicy:
    """An odd saturating function (tanh, erf): an odd polynomial on [-inner, inner), a
    general polynomial on [inner, outer) (mirrored for negative x; both share one set of
    powers), and +-1 beyond +-outer. Four comparisons, batched in one msb call."""

    inner: float = 1.0
    outer: float = 4.5
    degree: int = 5


@dataclasses.dataclass(frozen=True)
class GeluPolicy:
    """method "puma": a piecewise GeLU in the style of PUMA (Dong et al. 2023): 0 below
    ``breaks[0]``, a polynomial of degree ``degrees[i]`` on [breaks[i], breaks[i + 1]), x from
    ``breaks[-1]`` (polynomials without a constant term, so GeLU = x * Phi(x) with Phi
    piecewise polynomial: the erf-form jaxpr's erfc becomes 2 Phi and its final product stays
    as it is). Each break is one comparison (all in one msb call).

    PUMA's own pieces, breaks (-4, -1.95, 3) with degrees (3, 6), err by up to 0.009 (0.004
    of it from taking x itself at 3), and all-MiniLM-L6-v2's sentence embeddings then reach a
    cosine of only 0.9991 to plaintext. The defaults, one polynomial of degree 10 on
    [-3.5, 3.5), err by at most 0.0013 as computed securely at 18 fractional bits (0.0008 of
    it from the tails) and send 257 bytes per element under aby3 for the erf-form GeLU's
    erfc (measured with benchmarks' accuracy.py method: 2^15 points on [-20, 20]). Three
    pieces, breaks (-4, -2, 4) with degrees (4, 8), err by 0.0033 for 298 bytes; degree 8
    on [-3.25, 3.25) by 0.0037 for 234. method "relu": ReLU instead (opt-in, cheaper, not
    within the GeLU error bound). method "erf": x * Phi(x) from the erf approximation (max
    error 0.0003, 712 bytes per element)."""

    method: str = "puma"
    breaks: tuple = (-3.5, 3.5)
    degrees: tuple = (10,)

    def __post_init__(self):
        _check_method(self, ("puma", "relu", "erf"))
        if len(self.degrees) != len(self.breaks) - 1:
            raise ValueError(
                f"GeluPolicy: {len(self.breaks)} breaks bound "
                f"{len(self.breaks) - 1} polynomials, but {len(self.degrees)} "
                f"degrees were given"
            )


@dataclasses.dataclass(frozen=True)
class SiluPolicy:
    """method "puma": 0 below -b0, a polynomial of degree ``degrees[0]`` on [-b0, -b1), one
    of degree ``degrees[1]`` on [-b1, b1), x + (the first polynomial at -x) on [b1, b0), x
    above b0 (``breaks`` = (b0, b1)). PUMA's pieces (breaks (8, 4), degrees (2, 6), and x
    itself from 4 up) err by 0.072 just above 4; with the mirrored piece they err by 0.008.
    The defaults (8, 2) with degrees (3, 6) err by at most 0.0027 (what x itself misses at
    8), at the same cost (688 bytes per element under aby3). Breaks (12, 4) with degrees (4, 10)
    err by 0.00055 in float and at 18 bits (784 bytes per element). The mirrored piece
    costs no extra power. method "relu": ReLU (opt-in). method "logistic": x * logistic(x)."""

    method: str = "puma"
    breaks: tuple = (8.0, 2.0)
    degrees: tuple = (3, 6)

    def __post_init__(self):
        _check_method(self, ("puma", "relu", "logistic"))


@dataclasses.dataclass(frozen=True)
class SoftmaxPolicy:
    """method "exp" (default): exp(x - max x) with the exp policy (entries below max + lo are
    exactly 0), then ONE reciprocal of each row sum and a product.

    method "2quad" (opt-in, for models fine-tuned or distilled with it): the 2Quad of
    MPCFormer (Li et al., "MPCFormer: fast, performant and private Transformer inference
    with MPC", ICLR 2023), softmax(x)_i ~ (x_i + c)^2 / sum_j (x_j + c)^2, c = 5 in the
    paper. It needs neither the row max (n - 1 comparisons per row, log2 n rounds of
    them) nor exp. secjax clamps x + c at 0 from below first, a ReLU costing one
    comparison per element: in the paper's formula an attention mask (finfo.min, saturated
    in the ring to about -2^35) would get the LARGEST weight, and its square would overflow
    the ring. So entries below -c get weight 0 (2Quad itself gives them a weight growing
    again with -x), and a row entirely below -c (fully masked, say) comes out all 0, where
    softmax would be uniform (securely the reciprocal of the zero sum saturates and
    multiplies zeros; on all-public inputs, computed in the clear, JAX's division gives
    NaN). Still one reciprocal per row, of a sum that must lie in the reciprocal's
    normalisation range (below 2^(emax+1)); the square fits the ring for
    |x + c| < 2^(ring_bits / 2 - 1 - frac_bits) (2^13 at the defaults)."""

    method: str = "exp"
    c: float = 5.0

    def __post_init__(self):
        _check_method(self, ("exp", "2quad"))


@dataclasses.dataclass(frozen=True)
class TrigPolicy:
    """Trigonometric functions (``secjax.primitives.trigonometric``).

    sin and cos: u = x / (2 pi), reduced exactly to its fractional part f in [0, 1) (one
    truncation, one comparison), then -sin(pi t) at t = 2f - 1 in [-1, 1) by an odd
    polynomial of degree ``sin_degree``; tan = sin / cos (one reciprocal). The domain is
    |x| < ``max_abs``: the product x / (2 pi) is held as finely as that bound allows
    (outside it the product leaves the ring and the result is meaningless, though within
    [-1, 1]). atan: |x| or 1 / |x|, whichever is at most 1, into an odd polynomial of degree
    ``atan_degree`` on [-1, 1] (pi / 2 - it for |x| > 1); asin(x) = 2 atan(x / (1 +
    sqrt(1 - x^2))), acos = pi / 2 - asin, atan2 from atan(y / x) and the quadrant.
    Errors at 18 fractional bits, measured over the domain: sin, cos below 2e-5; atan,
    asin, acos, atan2 below 1e-4 (tests/test_coverage.py)."""

    sin_degree: int = 11
    atan_degree: int = 17
    max_abs: float = 1024.0


@dataclasses.dataclass(frozen=True)
class Policy:
    """Approximation choices for every nonlinear function (see each field's class)."""

    exp: ExpPolicy = ExpPolicy()
    reciprocal: ReciprocalPolicy = ReciprocalPolicy()
    rsqrt: RsqrtPolicy = RsqrtPolicy()
    log: LogPolicy = LogPolicy()
    tanh: OddSigmoidPolicy = OddSigmoidPolicy(inner=1.0, outer=4.5, degree=5)
    erf: OddSigmoidPolicy = OddSigmoidPolicy(inner=1.0, outer=3.5, degree=5)
    gelu: GeluPolicy = GeluPolicy()
    silu: SiluPolicy = SiluPolicy()
    softmax: SoftmaxPolicy = SoftmaxPolicy()
    trig: TrigPolicy = TrigPolicy()

    def replace(self, **changes) -> "Policy":
        return dataclasses.replace(self, **changes)


DEFAULT_POLICY = Policy()
