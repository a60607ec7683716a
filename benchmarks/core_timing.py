"""Compile and run time of secure_jit against jax.jit on linear workloads.

    python benchmarks/core_timing.py [--protocol plain]

Workloads: a 2-layer MLP (784-512-10, batch 64) and the embedding lookup plus every dense
layer of a tiny FlaxBertModel (2 layers, hidden 128), chained without nonlinearities. For
each: jax.jit's first call (compile + run) and warm call, then secure_jit's first call split
into trace, kernel compile and run, and its warm call; the last column is warm secure time
over warm plaintext time, measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
from rich.console import Console
from rich.table import Table

import secjax


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.Dense(512)(x)
        return nn.Dense(10)(h * h * 0.01 + h)


def mlp_workload():
    model = MLP()
    x = jax.random.normal(jax.random.key(0), (64, 784))
    params = model.init(jax.random.key(1), x)
    return "MLP 784-512-10, batch 64", model.apply, (params, x)


def bert_linear_workload():
    from transformers import BertConfig, FlaxBertModel

    config = BertConfig(
        vocab_size=1000,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=512,
    )
    params = FlaxBertModel(config, seed=0).params
    ids = jax.random.randint(jax.random.key(0), (1, 32), 0, config.vocab_size)

    def embed_and_linear(params, ids):
        emb = params["embeddings"]
        h = (
            emb["word_embeddings"]["embedding"][ids]
            + emb["position_embeddings"]["embedding"][: ids.shape[1]][None]
            + emb["token_type_embeddings"]["embedding"][0]
        )
        for layer in params["encoder"]["layer"].values():
            attention = layer["attention"]
            for name in ("query", "key", "value"):
                dense = attention["self"][name]
                h = h + (h @ dense["kernel"] + dense["bias"]) * 0.1
            for dense in (
                attention["output"]["dense"],
                layer["intermediate"]["dense"],
                layer["output"]["dense"],
            ):
                h = h @ dense["kernel"] + dense["bias"]
        return h

    return ("tiny BERT embeddings + dense layers", embed_and_linear, (params, secjax.public(ids)))


def _timed(fn):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def measure(name, fun, args, protocol):
    plain_args = jax.tree.map(
        lambda a: a.value if isinstance(a, secjax.values.Public) else a,
        args,
        is_leaf=lambda a: isinstance(a, secjax.values.Public),
    )
    plain = jax.jit(fun)
    plain_first = _timed(lambda: plain(*plain_args))
    plain_warm = min(_timed(lambda: plain(*plain_args)) for _ in range(5))
    secure = secjax.secure_jit(fun, protocol=protocol, seed=0)
    secure_first = _timed(lambda: secure(*args))
    first = secure.last_stats
    secure_warm = min(_timed(lambda: secure(*args)) for _ in range(3))
    return [
        name,
        f"{plain_first * 1e3:.0f}",
        f"{plain_warm * 1e3:.2f}",
        f"{secure_first:.2f}",
        f"{first.trace:.2f}",
        f"{first.compile:.2f}",
        f"{first.run:.2f}",
        str(first.kernels_compiled),
        f"{secure_warm * 1e3:.1f}",
        f"{secure_warm / plain_warm:.0f}x",
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="plain")
    args = parser.parse_args()
    table = Table(
        title=f"secure_jit ({args.protocol}) against jax.jit, CPU, {jax.device_count()} device"
    )
    for column in (
        "workload",
        "jit first ms",
        "jit warm ms",
        "secure first s",
        "trace s",
        "compile s",
        "run s",
        "kernels",
        "secure warm ms",
        "warm ratio",
    ):
        table.add_column(column, justify="left" if column == "workload" else "right")
    for workload in (mlp_workload, bert_linear_workload):
        table.add_row(*measure(*workload(), args.protocol))
    Console(width=170).print(table)


if __name__ == "__main__":
    main()
