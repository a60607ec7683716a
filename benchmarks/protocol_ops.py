"""Emulation time of single protocol operations against plaintext jax.jit, same run.

    python benchmarks/protocol_ops.py [--protocols semi2k,aby3]

A 256x256 secure matmul (with its truncation) and 100,000 secure comparisons, each timed
warm (kernels compiled by a first call), next to jax.jit of the same function. Bytes and
rounds are the whole call's: sharing the two inputs and revealing the output included.
"""

from __future__ import annotations

import argparse
import time

import jax
from rich.console import Console
from rich.table import Table

import secjax


def warm_seconds(fn, *args, repeats=3):
    """The best of ``repeats`` timed calls of ``fn(*args)``, after one untimed (compiling)."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", default="semi2k,aby3")
    args = parser.parse_args()
    keys = jax.random.split(jax.random.key(0), 4)
    cases = [
        (
            "256x256 matmul",
            lambda a, b: a @ b,
            (jax.random.normal(keys[0], (256, 256)), jax.random.normal(keys[1], (256, 256))),
        ),
        (
            "100,000 comparisons",
            lambda a, b: a < b,
            (jax.random.normal(keys[2], (100_000,)), jax.random.normal(keys[3], (100_000,))),
        ),
    ]
    table = Table(title="secure operations, warm, against jax.jit in the same run")
    for column in (
        "operation",
        "protocol",
        "jax.jit ms",
        "secure ms",
        "ratio",
        "bytes/party",
        "rounds",
    ):
        table.add_column(column, justify="left" if column in ("operation", "protocol") else "right")
    for name, fn, inputs in cases:
        plain = warm_seconds(jax.jit(fn), *inputs)
        for protocol in args.protocols.split(","):
            secure_fn = secjax.secure_jit(fn, protocol=protocol, seed=0)
            secure = warm_seconds(secure_fn, *inputs)
            cost = secure_fn.cost(*inputs)
            table.add_row(
                name,
                protocol,
                f"{plain * 1e3:.2f}",
                f"{secure * 1e3:.1f}",
                f"{secure / plain:.0f}x",
                secjax.runtime.cost.format_bytes(max(cost.bytes_per_party)),
                str(cost.rounds),
            )
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
