"""Secrets that outlive a call: generation with a secret KV cache, GPT-2-base's cost, and
MiniLM-128 with its weights shared once.

    python benchmarks/generation.py [--protocol aby3] [--emulation ideal] [--tokens 16]
                                    [--no-tiny] [--no-gpt2-base] [--no-minilm]
                                    [--run-gpt2-base TOKENS]

1. Tiny random-init GPT-2 and LLaMA (``examples/gpt2_generate.py``, ``examples/llama.py``):
   greedy generation of ``--tokens`` tokens with the secret cache and by recomputing the
   prefix, each beside ``jax.jit`` doing the same, per step (time, busiest party's bytes,
   rounds).
2. GPT-2-base (``GPT2Config()`` defaults, random init), costed without running: the prompt
   of 32 tokens through the model into the cache and the first token (PUMA's "one token
   after 32": 15.5 s and 3.8 GB on a LAN), then one step of decoding with the cache, with
   the weights shared beforehand (abstract handles); the LAN estimate is 5 Gbps, 1 ms.
   ``--run-gpt2-base N`` also runs it for N tokens and checks them against ``jax.jit``.
3. all-MiniLM-L6-v2 on 128 tokens (the model of ``benchmarks/minilm.py``): the weights
   shared once by their owner, then queries on the handles; the per-query bytes measured
   against the cost report's figure with the inputs' sharing subtracted.
"""

from __future__ import annotations

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "examples")]

import jax  # noqa: E402
import numpy as np  # noqa: E402
from gpt2_generate import PROMPT, build, compare_generation  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import secjax  # noqa: E402
from secjax import generation  # noqa: E402
from secjax.runtime.cost import format_bytes  # noqa: E402

PUMA_GPT2_BASE = (15.5, 3.774e9)  # seconds, bytes: PUMA (Dong et al., 2023), Table 4
GPT2_PROMPT = 32


def tiny(args, console) -> None:
    import llama

    options = dict(protocol=args.protocol, emulation=args.emulation, seed=0)
    console.rule("tiny GPT-2")
    model, _ = build("tiny")
    compare_generation(model, list(PROMPT), args.tokens, options, console)
    console.rule("tiny LLaMA")
    model = llama.FlaxLlamaForCausalLM(llama.LlamaConfig(**llama.CONFIG), seed=1)
    compare_generation(model, list(PROMPT), args.tokens, options, console)


def _gigabytes(n: float) -> str:
    return f"{n / 1e9:.3f} GB"


def gpt2_base(args, console) -> None:
    from transformers import FlaxGPT2LMHeadModel, GPT2Config

    model = FlaxGPT2LMHeadModel(GPT2Config(), _do_init=False)
    options = dict(protocol=args.protocol)
    weights = secjax.share(model.params_shape_tree, **options)  # abstract handles
    step = generation.secure_decode_step(model, **options)
    rows = []
    for label, length, position, feed in [
        (
            f"prompt of {GPT2_PROMPT} -> first token (cache of {GPT2_PROMPT + 1})",
            GPT2_PROMPT + 1,
            0,
            GPT2_PROMPT,
        ),
        (
            f"one more token with the cache (cache of {GPT2_PROMPT + 16}, position {GPT2_PROMPT})",
            GPT2_PROMPT + 16,
            GPT2_PROMPT,
            1,
        ),
    ]:
        shapes = jax.eval_shape(lambda n=length: model.init_cache(1, n))
        cache = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
        if position:  # a cache written up to ``position``: secret keys and values
            cache = jax.tree_util.tree_map_with_path(
                lambda path, leaf, position=position: (
                    secjax.public(np.int32(position))
                    if "cache_index" in jax.tree_util.keystr(path)
                    else secjax.share(jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), **options)
                ),
                cache,
            )
            ids = secjax.public(np.zeros((1, feed), np.int32))  # the revealed last token
        else:
            cache = secjax.public(cache)
            ids = jax.ShapeDtypeStruct((1, feed), np.int32)  # the secret prompt
        report = step.cost(
            weights,
            cache,
            ids,
            secjax.public(np.ones((1, length), np.int32)),
            secjax.public(np.arange(position, position + feed, dtype=np.int32)[None]),
        )
        rows.append((label, report))
    table = Table(
        title=f"GPT-2-base (GPT2Config(), random init) under {args.protocol}, "
        "weights pre-shared: cost without running; PUMA: "
        f"{PUMA_GPT2_BASE[0]} s, {PUMA_GPT2_BASE[1] / 1e9:.1f} GB"
    )
    for column in (
        "step",
        "busiest party",
        "all parties",
        "rounds",
        "sharing",
        "revealing",
        "LAN estimate s",
    ):
        table.add_column(column, justify="left" if column == "step" else "right")
    for label, report in rows:
        phases = report.phases()
        table.add_row(
            label,
            _gigabytes(report.total.max_sent),
            _gigabytes(sum(report.bytes_per_party)),
            str(report.rounds),
            format_bytes(phases["sharing"].max_sent),
            format_bytes(phases["revealing"].max_sent),
            f"{report.estimate_seconds():.2f}",
        )
    console.print(table)
    if args.run_gpt2_base:
        run_gpt2_base(args, console)


def run_gpt2_base(args, console) -> None:
    """GPT-2-base generating ``--run-gpt2-base`` tokens after a random 32-token prompt with
    the secret cache, run (emulated as ``--emulation``), beside ``jax.jit``."""
    import time

    from transformers import FlaxGPT2LMHeadModel, GPT2Config

    model = FlaxGPT2LMHeadModel(GPT2Config(), seed=0)
    prompt = [int(t) for t in np.random.default_rng(0).integers(0, 50257, GPT2_PROMPT)]
    new_tokens = args.run_gpt2_base
    total = GPT2_PROMPT + new_tokens
    options = dict(protocol=args.protocol, emulation=args.emulation, seed=0)
    weights = secjax.share(model.params, **options)
    ways = {
        "secure": generation.secure_decode_step(model, **options),
        "jit": jax.jit(generation.decode_step(model)),
    }
    rows = {way: [] for way in ways}
    tokens = {}
    for way, step in ways.items():

        def timed(*step_args, way=way, step=step):
            start = time.perf_counter()
            out = jax.block_until_ready(step(*step_args))
            rows[way].append((time.perf_counter() - start, getattr(step, "last_cost", None)))
            return out

        tokens[way] = generation.greedy(
            timed,
            weights if way == "secure" else model.params,
            model.init_cache(1, total),
            prompt,
            new_tokens,
            secure=way == "secure",
        )
    table = Table(
        title=f"GPT-2-base run with the secret cache (cache of {total}), "
        f"{args.protocol}, {args.emulation} emulation: tokens "
        f"{tokens['secure']}, jax.jit's {tokens['jit']}"
    )
    for column in (
        "step",
        "s (first of its shape compiles)",
        "busiest party",
        "rounds",
        "jax.jit s",
    ):
        table.add_column(column, justify="right")
    for i, ((seconds, report), (jit_seconds, _)) in enumerate(zip(rows["secure"], rows["jit"])):
        table.add_row(
            str(i + 1),
            f"{seconds:.1f}",
            f"{report.total.max_sent:,} B",
            str(report.rounds),
            f"{jit_seconds:.3f}",
        )
    console.print(table)


def minilm(args, console) -> None:
    from embed_minilm import load, make_embed
    from minilm import _tokens

    model, tokenizer = load()
    ids, mask = _tokens(tokenizer, 128)
    options = dict(protocol=args.protocol, emulation=args.emulation, seed=0)
    f = secjax.secure_jit(make_embed(model), **options)
    query = (secjax.private(ids, 1), secjax.public(mask))
    costed = f.cost(model.params, *query)
    sharer = secjax.secure_jit(lambda t: t, secret_outputs=True, **options)
    weights = sharer(model.params)
    plain = jax.jit(make_embed(model))(model.params, ids, mask)
    table = Table(
        title=f"all-MiniLM-L6-v2, 128 tokens, under {args.protocol} "
        f"({args.emulation} emulation): weights shared once, then queries"
    )
    for column in (
        "",
        "busiest party",
        "rounds",
        "sharing",
        "computing",
        "revealing",
        "cosine to jax.jit",
    ):
        table.add_column(column, justify="left" if not column else "right")

    def row(label, report, cosine=""):
        phases = report.phases()
        table.add_row(
            label,
            f"{_gigabytes(report.total.max_sent)} ({report.total.max_sent:,} B)",
            str(report.rounds),
            *[format_bytes(phases[p].max_sent) for p in ("sharing", "computing", "revealing")],
            cosine,
        )

    row("sharing the weights (once)", sharer.last_cost)
    for query_number in (1, 2):
        out = f(weights, *query)
        cosine = float(np.sum(out * plain) / (np.linalg.norm(out) * np.linalg.norm(plain)))
        row(f"query {query_number} on the handles (measured)", f.last_cost, f"{cosine:.6f}")
    row("cost report, weights shared with the query", costed)
    row("cost report less the inputs' sharing", costed.without_input_sharing())
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="aby3")
    parser.add_argument(
        "--emulation",
        default="ideal",
        choices=["protocol", "ideal"],
        help="how the runs are emulated (the costs are the same)",
    )
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--no-tiny", action="store_true")
    parser.add_argument("--no-gpt2-base", action="store_true")
    parser.add_argument("--no-minilm", action="store_true")
    parser.add_argument(
        "--run-gpt2-base",
        type=int,
        default=0,
        metavar="TOKENS",
        help="also run GPT-2-base for TOKENS tokens (about 4 GB of memory)",
    )
    args = parser.parse_args()
    console = Console(width=160)
    if not args.no_tiny:
        tiny(args, console)
    if not args.no_gpt2_base:
        gpt2_base(args, console)
    if not args.no_minilm:
        minilm(args, console)


if __name__ == "__main__":
    main()
