"""Accuracy of secjax's nonlinear functions against float JAX, and their cost under aby3.

    PYTHONPATH=. python benchmarks/accuracy.py [--protocol plain] [--plot docs/accuracy.png]

Prints one table, a row per function: its domain, max |error|, max relative error (where
|f| >= 1e-3; per row of the output, max |error| / max |f|, for layer norm), max pointwise
min(|error|, relative error), the bound the tests assert, and the busiest party's bytes
per element and the rounds of the whole call under aby3 (``f.cost``, the input's sharing
included: 8 bytes per element, 1 round).
The 2Quad softmax is measured against its plaintext twin (``secjax.nn.softmax`` under the
2Quad policy): it is a different function, for models fine-tuned with it. Writes a plot of
the error curves of the elementwise functions.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import secjax
import secjax.nn as snn

POINTWISE = "min(abs,rel)<=0.01"
QUAD = snn.DEFAULT_POLICY.replace(softmax=snn.SoftmaxPolicy(method="2quad"))


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    fn: Callable
    x: np.ndarray
    domain: str
    bound: str = POINTWISE
    reference: Callable | None = None  # default: fn itself in float
    policy: object = None
    per_row: bool = False  # relative error per output row (layer norm)
    curve: bool = False  # drawn in the plot


def _layer_norm_case() -> Case:
    import flax.linen as nn

    rng = np.random.default_rng(0)
    var = np.geomspace(1e-3, 1e3, 16)
    x = rng.normal(size=(16, 64)) * np.sqrt(var)[:, None]
    ln = nn.LayerNorm()
    params = ln.init(jax.random.key(0), jnp.asarray(x, jnp.float32))
    return Case(
        "layer norm",
        lambda v: ln.apply(params, v),
        x,
        "var in [1e-3, 1e3]",
        "row rel<=1%",
        per_row=True,
    )


def cases() -> list[Case]:
    sym = np.linspace(-10, 10, 2001)
    pos = np.geomspace(0.01, 100, 2001)
    wide = np.linspace(-20, 20, 4001)
    grid = np.arange(-80, 81) / 8.0  # integers, halves and eighths
    scores = np.asarray(jax.random.uniform(jax.random.key(0), (16, 128), minval=-30, maxval=30))
    act = "abs<=0.015"
    return [
        Case("exp", jnp.exp, sym, "[-10, 10]", curve=True),
        Case("logistic", jax.nn.sigmoid, sym, "[-10, 10]", curve=True),
        Case("tanh", jnp.tanh, sym, "[-10, 10]", curve=True),
        Case("erf", jax.scipy.special.erf, sym, "[-10, 10]", curve=True),
        Case(
            "reciprocal",
            lambda v: 1.0 / v,
            sym[np.abs(sym) >= 0.1],
            "[-10, 10] \\ (-0.1, 0.1)",
            curve=True,
        ),
        Case("log", jnp.log, pos, "[0.01, 100]", curve=True),
        Case("sqrt", jnp.sqrt, pos, "[0.01, 100]", curve=True),
        Case("rsqrt", jax.lax.rsqrt, pos, "[0.01, 100]", curve=True),
        Case(
            "gelu (erf)",
            lambda v: jax.nn.gelu(v, approximate=False),
            wide,
            "[-20, 20]",
            act,
            curve=True,
        ),
        Case(
            "gelu (tanh)",
            lambda v: jax.nn.gelu(v, approximate=True),
            wide,
            "[-20, 20]",
            act,
            curve=True,
        ),
        Case("silu", jax.nn.silu, wide, "[-20, 20]", act, curve=True),
        Case("softmax", jax.nn.softmax, scores, "16x128 in [-30, 30]"),
        Case(
            "softmax 2quad",
            jax.nn.softmax,
            scores,
            "16x128 in [-30, 30]",
            "vs twin",
            reference=lambda v: snn.softmax(v, policy=QUAD),
            policy=QUAD,
        ),
        _layer_norm_case(),
        Case("floor", jnp.floor, grid, "[-10, 10] by 1/8", "exact"),
        Case("ceil", jnp.ceil, grid, "[-10, 10] by 1/8", "exact"),
        Case("round (even)", jnp.round, grid, "[-10, 10] by 1/8", "exact"),
        Case(
            "round (away)",
            lambda v: jax.lax.round(v, jax.lax.RoundingMethod.AWAY_FROM_ZERO),
            grid,
            "[-10, 10] by 1/8",
            "exact",
        ),
        # secjax.primitives.trigonometric (TrigPolicy) and the exact remainder
        Case("sin", jnp.sin, np.linspace(-1000, 1000, 4001), "[-1000, 1000]", "abs<=2e-5"),
        Case("cos", jnp.cos, np.linspace(-1000, 1000, 4001), "[-1000, 1000]", "abs<=2e-5"),
        Case("tan", jnp.tan, np.linspace(-1.4, 1.4, 2001), "[-1.4, 1.4]"),
        Case("atan", jnp.arctan, wide, "[-20, 20]", "abs<=1e-4"),
        Case("asin", jnp.arcsin, np.linspace(-0.999, 0.999, 2001), "[-0.999, 0.999]", "abs<=1e-4"),
        Case("acos", jnp.arccos, np.linspace(-0.999, 0.999, 2001), "[-0.999, 0.999]", "abs<=1e-4"),
        Case("sinh", jnp.sinh, np.linspace(-5, 5, 2001), "[-5, 5]"),
        Case("cosh", jnp.cosh, np.linspace(-5, 5, 2001), "[-5, 5]"),
        Case("asinh", jnp.arcsinh, wide, "[-20, 20]"),
        Case("acosh", jnp.arccosh, np.linspace(1, 20, 2001), "[1, 20]"),
        Case("atanh", jnp.arctanh, np.linspace(-0.95, 0.95, 2001), "[-0.95, 0.95]"),
        Case("expm1", jnp.expm1, np.linspace(-5, 2, 2001), "[-5, 2]"),
        Case(
            "fmod by 0.7", lambda v: jnp.fmod(v, 0.7), grid, "[-10, 10] by 1/8", "exact (encodings)"
        ),
    ]


def errors(case: Case, got, ref):
    """(max |error|, max relative error, pointwise min(abs, rel) error)."""
    err = np.abs(got - ref)
    if case.per_row:
        return err.max(), (err.max(-1) / np.abs(ref).max(-1)).max(), np.full(1, np.nan)
    big = np.abs(ref) >= 1e-3
    rel = (err[big] / np.abs(ref[big])).max() if big.any() else 0.0
    return err.max(), rel, np.minimum(err, err / np.maximum(np.abs(ref), 1e-30))


def measure(protocol: str):
    """One row per case: (name, domain, abs, rel, min(abs, rel), bound, bytes per element,
    rounds), and the min(abs, rel) error curves of the elementwise functions."""
    rows, curves = [], {}
    for case in cases():
        x = jnp.asarray(case.x, jnp.float32)
        reference = case.reference or jax.jit(case.fn)
        ref = np.asarray(reference(x), np.float64)
        secure = secjax.secure_jit(case.fn, protocol=protocol, policy=case.policy)
        got = np.asarray(secure(x), np.float64)
        worst, rel, both = errors(case, got, ref)
        report = secjax.secure_jit(case.fn, protocol="aby3", policy=case.policy).cost(
            jax.ShapeDtypeStruct(x.shape, x.dtype)
        )
        rows.append(
            (
                case.name,
                case.domain,
                worst,
                rel,
                np.max(both),
                case.bound,
                max(report.bytes_per_party) / x.size,
                report.rounds,
            )
        )
        if case.curve:
            curves[case.name] = (case.x, both)
    return rows, curves


def plot(curves, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is optional
        print("matplotlib is not installed: no plot written")
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for name, (x, err) in curves.items():
        ax = axes[1] if name in ("log", "sqrt", "rsqrt") else axes[0]
        ax.semilogy(x, np.maximum(err, 1e-9), label=name, lw=0.8)
    axes[1].set_xscale("log")
    for ax in axes:
        ax.axhline(0.01, color="k", ls="--", lw=0.8)
        ax.set_xlabel("x")
        ax.set_ylabel("min(|abs err|, |rel err|)")
        ax.legend(fontsize=7)
    fig.suptitle("secjax nonlinear functions: error vs float (18 fractional bits, 64-bit ring)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", default="plain")
    parser.add_argument("--plot", default="docs/accuracy.png")
    args = parser.parse_args()
    rows, curves = measure(args.protocol)
    print(
        f"accuracy under {args.protocol} (18 fractional bits, 64-bit ring); "
        "cost under aby3 per element"
    )
    print(
        f"{'function':<14} {'domain':<24} {'max abs err':>11} {'max rel err':>11} "
        f"{'min(abs,rel)':>12}  {'bound':<18} {'bytes':>7} {'rounds':>6}"
    )
    for name, domain, worst, rel, both, bound, per_element, rounds in rows:
        both = "-" if np.isnan(both) else f"{both:.3e}"
        print(
            f"{name:<14} {domain:<24} {worst:11.3e} {rel:11.3e} {both:>12}  {bound:<18} "
            f"{per_element:7.1f} {rounds:6d}"
        )
    plot(curves, args.plot)


if __name__ == "__main__":
    main()
