"""Accuracy of secjax's nonlinear functions against float JAX, and their cost under aby3.

    PYTHONPATH=. python benchmarks/accuracy.py [--protocol plain] [--plot docs/accuracy.png]

Prints one row per function: its domain, max |error|, max relative error (where |f| >= 1e-3)
and max min(abs, rel) — the bound the tests assert is min(abs, rel) <= 0.01 (0.015 absolute
for GeLU and SiLU). When the aby3 protocol exists, also bytes sent per party and rounds per
element from ``f.cost``. Writes a plot of the error curves.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import secjax
from secjax.protocols import PROTOCOLS


def _cases():
    sym = np.linspace(-10, 10, 2001)
    pos = np.geomspace(0.01, 100, 2001)
    wide = np.linspace(-20, 20, 4001)
    recip = sym[np.abs(sym) >= 0.1]
    return [
        ("exp", jnp.exp, sym, "[-10, 10]"),
        ("logistic", jax.nn.sigmoid, sym, "[-10, 10]"),
        ("tanh", jnp.tanh, sym, "[-10, 10]"),
        ("erf", jax.scipy.special.erf, sym, "[-10, 10]"),
        ("reciprocal", lambda v: 1.0 / v, recip, "[-10, 10] \\ (-0.1, 0.1)"),
        ("log", jnp.log, pos, "[0.01, 100]"),
        ("sqrt", jnp.sqrt, pos, "[0.01, 100]"),
        ("rsqrt", jax.lax.rsqrt, pos, "[0.01, 100]"),
        ("gelu (erf)", lambda v: jax.nn.gelu(v, approximate=False), wide, "[-20, 20]"),
        ("gelu (tanh)", lambda v: jax.nn.gelu(v, approximate=True), wide, "[-20, 20]"),
        ("silu", jax.nn.silu, wide, "[-20, 20]"),
    ]


def measure(protocol: str):
    rows, curves = [], {}
    for name, f, x, domain in _cases():
        x = jnp.asarray(x, jnp.float32)
        ref = np.asarray(jax.jit(f)(x), np.float64)
        got = np.asarray(secjax.secure_jit(f, protocol=protocol)(x), np.float64)
        err = np.abs(got - ref)
        big = np.abs(ref) >= 1e-3
        rel = err[big] / np.abs(ref[big])
        both = np.minimum(err, err / np.maximum(np.abs(ref), 1e-30))
        rows.append((name, domain, err.max(), rel.max(), both.max()))
        curves[name] = (np.asarray(x), both)
    # softmax on rows of width 128, values in [-30, 30]
    s = jax.random.uniform(jax.random.key(0), (16, 128), minval=-30, maxval=30)
    ref = np.asarray(jax.nn.softmax(s), np.float64)
    got = np.asarray(secjax.secure_jit(jax.nn.softmax, protocol=protocol)(s), np.float64)
    err = np.abs(got - ref)
    big = ref >= 1e-3
    rows.append(("softmax", "16x128 in [-30, 30]", err.max(),
                 (err[big] / ref[big]).max(), err.max()))
    # layer norm, rows of variance 1e-3 .. 1e3
    import flax.linen as nn

    rng = np.random.default_rng(0)
    var = np.geomspace(1e-3, 1e3, 16)
    x = jnp.asarray(rng.normal(size=(16, 64)) * np.sqrt(var)[:, None], jnp.float32)
    ln = nn.LayerNorm()
    params = ln.init(jax.random.key(0), x)
    ref = np.asarray(ln.apply(params, x), np.float64)
    got = np.asarray(secjax.secure_jit(lambda v: ln.apply(params, v), protocol=protocol)(x))
    err = np.abs(got - ref)
    rows.append(("layer norm", "var in [1e-3, 1e3]", err.max(),
                 (err.max(1) / np.abs(ref).max(1)).max(), err.max()))
    return rows, curves


def costs():
    out = []
    n = 1024
    spec = jax.ShapeDtypeStruct((n,), jnp.float32)
    for name, f, _, _ in _cases():
        report = secjax.secure_jit(f, protocol="aby3").cost(spec)
        out.append((name, max(report.bytes_per_party) / n, report.rounds))
    report = secjax.secure_jit(jax.nn.softmax, protocol="aby3").cost(
        jax.ShapeDtypeStruct((8, 128), jnp.float32))
    out.append(("softmax (8x128)", max(report.bytes_per_party) / 1024, report.rounds))
    return out


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
    print(f"accuracy under {args.protocol} (18 fractional bits, 64-bit ring)")
    print(f"{'function':<13} {'domain':<26} {'max abs err':>12} {'max rel err':>12} "
          f"{'max min(a,r)':>13}")
    for name, domain, a, r, b in rows:
        print(f"{name:<13} {domain:<26} {a:12.3e} {r:12.3e} {b:13.3e}")
    if "aby3" in PROTOCOLS:
        print("\ncost under aby3 (busiest party's bytes per element, rounds)")
        for name, per_element, rounds in costs():
            print(f"{name:<16} {per_element:10.1f} B {rounds:6d} rounds")
    else:
        print("\n(aby3 is not available in this checkout: no cost table)")
    plot(curves, args.plot)


if __name__ == "__main__":
    main()
