"""The safe truncation beside the default (probabilistic) one: bytes, rounds and time.

    python benchmarks/truncation.py [--elements 100000]

Per element and per party (the busiest), a product of two secrets truncated back to 18
fractional bits (``a * b``) and a truncation alone (``a * 0.37``, a public factor that is
not an integer), under semi2k and aby3; sharing the inputs and opening the output are left
out. Times are warm, against jax.jit of the same function in the same run. Then the bounds
that the default truncation needs, per ring size and fractional bits.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from protocol_ops import warm_seconds
from rich.console import Console
from rich.table import Table

import secjax
from secjax.protocols.ranges import product_range_bits
from secjax.ring import Ring

CASES = {"a * b (product)": lambda a, b: a * b, "a * 0.37 (truncation)": lambda a, b: a * 0.37}


def _per_element(fn, protocol: str, n: int, **options):
    """(bytes per element of the busiest party, rounds) of ``fn``'s own computation."""
    x = jax.ShapeDtypeStruct((n,), jnp.float32)
    rows = secjax.secure_jit(fn, protocol=protocol, **options).cost(x, x).rows
    own = [
        tally for (_, primitive, _), tally in rows.items() if primitive != "(inputs and outputs)"
    ]
    sent = [sum(t.sent[p] for t in own) for p in range(len(own[0].sent))]
    return max(sent) / n, sum(t.rounds for t in own)


def cost_table(n: int) -> Table:
    table = Table(title=f"truncations of {n:,} elements, warm, against jax.jit in the same run")
    for column in (
        "operation",
        "protocol",
        "truncation",
        "bytes/element",
        "ratio",
        "rounds",
        "secure ms",
        "x jax.jit",
    ):
        table.add_column(
            column, justify="left" if column in ("operation", "protocol", "truncation") else "right"
        )
    rng = np.random.default_rng(0)
    inputs = (
        rng.normal(size=n).astype(np.float32) * 100,
        rng.normal(size=n).astype(np.float32) * 100,
    )
    for name, fn in CASES.items():
        plain = warm_seconds(jax.jit(fn), *inputs)
        for protocol in ("semi2k", "aby3"):
            default = None
            for safe in (False, True):
                per_element, rounds = _per_element(fn, protocol, n, safe_truncation=safe)
                default = default or per_element
                secure = warm_seconds(
                    secjax.secure_jit(fn, protocol=protocol, seed=0, safe_truncation=safe), *inputs
                )
                table.add_row(
                    name,
                    protocol,
                    "safe" if safe else "default",
                    f"{per_element:.1f}",
                    f"{per_element / default:.2f}x",
                    str(rounds),
                    f"{secure * 1e3:.1f}",
                    f"{secure / plain:.0f}x",
                )
    return table


def bounds_table() -> Table:
    table = Table(
        title="where values fit: |x| < 2^(k-1); the default truncation: |x| < "
        "2^(k-2) in the ring, a square's: x < 2^(k-1)"
    )
    for column in (
        "ring bits",
        "frac_bits",
        "a value (its encoding) below",
        "a product of two values below",
        "a square below",
    ):
        table.add_column(column, justify="right")
    for bits, fracs in ((64, (12, 14, 16, 18, 20, 22, 24, 26, 28)), (32, (8, 10, 12))):
        for frac in fracs:
            ring = Ring(bits, frac)
            table.add_row(
                str(bits),
                str(frac),
                f"{ring.max_abs(frac):.3g}",
                f"{2.0 ** product_range_bits(ring):.3g}",
                f"{2.0 ** (product_range_bits(ring) + 1):.3g}",
            )
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=100_000)
    args = parser.parse_args()
    console = Console(width=120)
    console.print(cost_table(args.elements))
    console.print(bounds_table())


if __name__ == "__main__":
    main()
