"""Communication of the exact operations added for jax.numpy coverage (sorting, bitwise,
integer division, logical reductions, pooling), per element, from ``cost()`` (exact,
without running).

    PYTHONPATH=. python benchmarks/op_costs.py [--protocols aby3,semi2k]

Bytes are the busiest party's, divided by the number of elements of the first input, the
inputs' sharing excluded (``without_input_sharing``) and the outputs' opening included;
rounds are the whole call's.
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
from rich.console import Console
from rich.table import Table

import secjax

F = jax.ShapeDtypeStruct((64, 64), jnp.float32)
INTS = jax.ShapeDtypeStruct((4096,), jnp.int32)
B = jax.ShapeDtypeStruct((64, 64), jnp.bool_)
IMG = jax.ShapeDtypeStruct((1, 32, 32, 4), jnp.float32)

CASES = [
    ("sort, 64 rows of 64", lambda x: jnp.sort(x, axis=1), (F,)),
    ("argsort, 64 rows of 64", lambda x: jnp.argsort(x, axis=1), (F,)),
    ("top_k k=5, 64 rows of 64", lambda x: jax.lax.top_k(x, 5), (F,)),
    ("median, 64 rows of 64", lambda x: jnp.median(x, axis=1), (F,)),
    ("bitwise and (int32)", jnp.bitwise_and, (INTS, INTS)),
    ("bitwise xor with public", lambda x: x ^ 0x5A5A, (INTS,)),
    ("shift right by 3 (int32)", lambda x: x >> 3, (INTS,)),
    ("population_count (int32)", jax.lax.population_count, (INTS,)),
    ("floor_divide (int32)", jnp.floor_divide, (INTS, INTS)),
    ("x // 7 (int32)", lambda x: x // 7, (INTS,)),
    ("remainder (int32)", jnp.remainder, (INTS, INTS)),
    ("fmod (float32)", jnp.fmod, (F, F)),
    ("all over rows of 64", lambda b: jnp.all(b, axis=1), (B,)),
    ("reduce_prod over rows of 64", lambda x: jnp.prod(x, axis=1), (F,)),
    ("cummax over rows of 64", lambda x: jax.lax.cummax(x, axis=1), (F,)),
    ("max pool 2x2 (32x32x4)", lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)), (IMG,)),
    (
        "max pool 2x2 gradient",
        jax.grad(lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)).sum()),
        (IMG,),
    ),
    ("signbit (float32)", jnp.signbit, (F,)),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", default="aby3,semi2k")
    args = parser.parse_args()
    protocols = args.protocols.split(",")
    table = Table(title="exact operations: busiest party's bytes per input element, rounds")
    table.add_column("operation")
    for protocol in protocols:
        table.add_column(f"{protocol} bytes/elem", justify="right")
        table.add_column(f"{protocol} rounds", justify="right")
    for name, fn, inputs in CASES:
        row = [name]
        elements = inputs[0].size
        for protocol in protocols:
            report = secjax.secure_jit(fn, protocol=protocol).cost(*inputs)
            report = report.without_input_sharing()
            row += [f"{max(report.bytes_per_party) / elements:.0f}", str(report.rounds)]
        table.add_row(*row)
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
