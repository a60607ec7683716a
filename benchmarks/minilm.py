"""Private inference benchmark: MiniLM-128, BERT-base's cost, tiny GPT-2 greedy generation.

    python benchmarks/minilm.py [--protocols aby3,semi2k] [--emulation protocol,ideal]
                                [--tokens 128] [--warm 2] [--no-minilm] [--no-bert-base]
                                [--gpt2-tokens 8] [--no-gpt2]

all-MiniLM-L6-v2 on 128 tokens, for each protocol and emulation mode (``protocol``: every
party's real computation; ``ideal``: each interactive step computed from the opened inputs,
same cost): the secure call's first run (trace + kernel compiles + run) and its warm run,
the warm one as a ratio to plaintext ``jax.jit``'s best warm call in the same process (timed
at the start and again after each secure run: the machine's speed drifts); the busiest
party's bytes and the rounds (exact, from the traced protocol steps), the truncations, and
the time estimated on PUMA's LAN (5 Gbps, 1 ms RTT), each with and without sharing the
inputs (a served model's weights are shared once, not per query); then the bytes by
protocol operation. Then BERT-base (random init, 12 layers, hidden 768) at the same length,
costed without running. Writes a plot of the bytes by layer to
``benchmarks/cost_by_layer.png``.

Then greedy generation of ``--gpt2-tokens`` tokens with the tiny random-init GPT-2 of
``examples/gpt2_generate.py`` (weights and tokens secret, one secure call per token), for each
protocol and emulation mode, against ``jax.jit`` in the same process: whether the tokens
match, the first step's and the mean warm step's seconds, and the same costs per step.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "examples")]

import jax  # noqa: E402
import numpy as np  # noqa: E402
from embed_minilm import load, make_embed  # noqa: E402
from gpt2_generate import (  # noqa: E402
    PROMPT,
    build,
    compare,
    greedy,
    make_next_logits,
    make_secure_step,  # noqa: E402
)
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import secjax  # noqa: E402
from secjax.runtime.cost import format_bytes  # noqa: E402

TEXT = (
    "Secure multi-party computation lets a model owner and a user run a transformer "
    "together so that neither learns the other's secret: the weights stay with the "
    "owner and the prompt with the user. "
)
PLAIN_REPEATS = 10  # GPT-2 generations by jax.jit to average its warm step over


def _tokens(tokenizer, n: int):
    batch = tokenizer(
        [TEXT * 20], truncation=True, max_length=n, padding="max_length", return_tensors="np"
    )
    return batch["input_ids"].astype(np.int32), batch["attention_mask"].astype(np.int32)


def _timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def _truncations(report) -> int:
    """Truncation steps run (each truncates a whole array)."""
    trunc = report.by_op().get("trunc")
    return trunc.calls if trunc else 0


COST_COLUMNS = (
    "max sent",
    "max sent, inputs pre-shared",
    "rounds",
    "truncations",
    "LAN estimate s",
    "LAN estimate s, inputs pre-shared",
)


def _cost_cells(report) -> list[str]:
    """The COST_COLUMNS of ``report``: with and without sharing the inputs (the weights)."""
    online = report.without_input_sharing()
    return [
        format_bytes(report.total.max_sent),
        format_bytes(online.total.max_sent),
        str(report.rounds),
        str(_truncations(report)),
        f"{report.estimate_seconds():.2f}",
        f"{online.estimate_seconds():.2f}",
    ]


def _cosine(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def bert_base_cost(protocol: str, tokens: int):
    from transformers import BertConfig, FlaxBertModel

    model = FlaxBertModel(BertConfig(), _do_init=False)
    ids = jax.ShapeDtypeStruct((1, tokens), np.int32)

    def forward(params, input_ids, attention_mask):
        return model(
            input_ids=input_ids, attention_mask=attention_mask, params=params
        ).last_hidden_state

    f = secjax.secure_jit(forward, protocol=protocol)
    return f.cost(
        model.params_shape_tree,
        secjax.private(ids, 1),
        secjax.public(np.ones((1, tokens), np.int32)),
    )


def by_operation_table(reports: dict) -> Table:
    """Where the bytes go: per protocol operation, the busiest party's bytes, their share of
    the total, the calls and the rounds, for each protocol's report."""
    table = Table(title="MiniLM: communication by protocol operation (busiest party)")
    table.add_column("operation")
    for protocol in reports:
        for column in ("sent", "share", "calls", "rounds"):
            table.add_column(f"{protocol} {column}", justify="right")
    by_op = {protocol: report.by_op() for protocol, report in reports.items()}
    first = next(iter(by_op.values()), {})
    ops = sorted(
        {op for rows in by_op.values() for op in rows},  # the first protocol's order
        key=lambda op: -(first[op].max_sent if op in first else 0),
    )
    for op in ops:
        cells = []
        for protocol, report in reports.items():
            tally = by_op[protocol].get(op)
            cells += (
                ["", "", "", ""]
                if tally is None
                else [
                    format_bytes(tally.max_sent),
                    f"{100 * tally.max_sent / report.total.max_sent:.1f}%",
                    str(tally.calls),
                    str(tally.rounds),
                ]
            )
        table.add_row(op, *cells)
    return table


def plot_by_layer(reports: dict, path: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    by_scope = {name: report.by_scope(4) for name, report in reports.items()}
    labels = list(dict.fromkeys(k for scopes in by_scope.values() for k in scopes))
    labels.sort(key=lambda k: (k != "(top level)", k))
    width = 0.8 / len(reports)
    for i, (name, scopes) in enumerate(by_scope.items()):
        mib = [scopes[k].max_sent / 2**20 if k in scopes else 0.0 for k in labels]
        ax.bar(np.arange(len(labels)) + i * width, mib, width, label=name)
    ax.set_xticks(np.arange(len(labels)) + width * (len(reports) - 1) / 2)
    ax.set_xticklabels(
        [k.replace("FlaxBertModule/", "") for k in labels], rotation=30, ha="right", fontsize=8
    )
    ax.set_ylabel("MiB sent by the busiest party")
    ax.set_title("MiniLM-L6 on 128 tokens: communication by layer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def minilm(args, console):
    """The MiniLM table and the plot of its bytes by layer."""
    model, tokenizer = load()
    ids, mask = _tokens(tokenizer, args.tokens)
    forward = make_embed(model)
    plain_fn = jax.jit(forward)
    plain, plain_first = _timed(lambda: plain_fn(model.params, ids, mask))
    plain_warm = min(_timed(lambda: plain_fn(model.params, ids, mask))[1] for _ in range(10))

    rows, jit_warms, reports = [], [plain_warm], {}
    for protocol, mode in _runs(args):
        f = secjax.secure_jit(forward, protocol=protocol, seed=0, progress=True, emulation=mode)
        inputs = (model.params, secjax.private(ids, 1), secjax.public(mask))
        if args.cost_only:
            if mode == "protocol":
                report = reports[protocol] = f.cost(*inputs)
                rows.append((protocol, None, report))
            continue
        secure, first = _timed(lambda: f(*inputs))
        compile_s = f.last_stats.compile
        warm = min(_timed(lambda: f(*inputs))[1] for _ in range(args.warm))
        # jax.jit timed again after each run: the machine's speed drifts within a run
        jit_warms.append(
            min(_timed(lambda: plain_fn(model.params, ids, mask))[1] for _ in range(10))
        )
        report = reports[protocol] = f.last_cost
        rows.append(
            (
                _label(protocol, mode),
                (_cosine(secure, plain), first, compile_s, warm, jit_warms[-1]),
                report,
            )
        )
    jit_best = min(jit_warms)
    table = Table(
        title=f"all-MiniLM-L6-v2, {args.tokens} tokens, real weights (jax.jit: "
        f"first {plain_first:.2f} s, warm {jit_best * 1e3:.1f} ms, the best "
        f"of {10 * len(jit_warms)} calls)"
    )
    for column in (
        "protocol",
        "cosine",
        "first s",
        "compile s",
        "warm s",
        "jit warm ms",
        "warm / jit",
        *COST_COLUMNS,
    ):
        table.add_column(column, justify="left" if column == "protocol" else "right")
    for label, timing, report in rows:
        if timing is None:
            table.add_row(label, "", "", "", "", "", "", *_cost_cells(report))
            continue
        cosine, first, compile_s, warm, jit_warm = timing
        table.add_row(
            label,
            f"{cosine:.6f}",
            f"{first:.1f}",
            f"{compile_s:.1f}",
            f"{warm:.2f}",
            f"{jit_warm * 1e3:.1f}",
            f"{warm / jit_best:.0f}x",
            *_cost_cells(report),
        )
    console.print(table)
    console.print(
        "jit warm ms: the best of 10 jax.jit calls right after that row's runs; "
        "warm / jit: against the best jax.jit call of the whole run"
    )
    console.print(by_operation_table(reports))
    plot_by_layer(reports, os.path.join(ROOT, "benchmarks", "cost_by_layer.png"))
    console.print("plot: benchmarks/cost_by_layer.png")


def _runs(args) -> list[tuple[str, str]]:
    return [
        (protocol, mode)
        for protocol in args.protocols.split(",")
        for mode in args.emulation.split(",")
    ]


def _label(protocol: str, mode: str) -> str:
    return protocol if mode == "protocol" else f"{protocol} ({mode} emulation)"


def _generate(step, params, total: int):
    """Greedy generation with ``step`` up to ``total`` tokens: the tokens, each step's
    logits, each step's seconds, and (for a secure step) each step's cost report."""
    seconds, reports = [], []

    def timed(*step_args):
        logits, elapsed = _timed(lambda: step(*step_args))
        seconds.append(elapsed)
        if hasattr(step, "secure"):
            reports.append(step.secure.last_cost)
        return logits

    tokens, logits = greedy(timed, params, list(PROMPT), total)
    return tokens, logits, seconds, reports


def gpt2_generation(args, console):
    """The tiny GPT-2 greedy generation table: each step is one call on the prefix padded
    to a fixed length, so every step after the first reuses the compiled kernels."""
    model, params = build("tiny")
    next_logits = make_next_logits(model)
    total = len(PROMPT) + args.gpt2_tokens
    plain_step = jax.jit(next_logits)
    plain_tokens, plain_logits, plain_s, _ = _generate(plain_step, params, total)
    # a warm step takes well under a millisecond: average it over several generations
    plain_warm = float(
        np.mean([_generate(plain_step, params, total)[2] for _ in range(PLAIN_REPEATS)])
    )

    table = Table(
        title=f"tiny GPT-2 (random init, 2 layers, width 64): greedy generation of "
        f"{args.gpt2_tokens} tokens after a {len(PROMPT)}-token prompt",
        caption=f"same tokens: as jax.jit's (how many before the first "
        f"difference); cosine: the worst step's next-token logits; first "
        f"s: the first step (with the compiles); warm s: the mean later "
        f"step; costs per step. jax.jit: first step "
        f"{plain_s[0]:.2f} s, mean warm step {plain_warm * 1e3:.2f} ms "
        f"(over {PLAIN_REPEATS} more generations)",
    )
    for column in (
        "protocol",
        "same tokens",
        "cosine",
        "total s",
        "first s",
        "warm s",
        "warm / jit",
        *COST_COLUMNS,
    ):
        table.add_column(column, justify="left" if column == "protocol" else "right")
    for protocol, mode in _runs(args):
        step = make_secure_step(next_logits, protocol=protocol, seed=0, emulation=mode)
        console.print(f"generating under {_label(protocol, mode)}...")
        tokens, logits, seconds, reports = _generate(step, params, total)
        first_difference, worst_cosine, _ = compare(plain_tokens, plain_logits, tokens, logits)
        same = len(tokens) if first_difference is None else first_difference
        costs = {(r.total.max_sent, r.rounds, _truncations(r)) for r in reports}
        if len(costs) > 1:
            console.print(f"[red]the steps' costs differ[/red]: {sorted(costs)}; the last shown")
        warm = float(np.mean(seconds[1:]))
        table.add_row(
            _label(protocol, mode),
            f"{'yes' if first_difference is None else 'no'} ({same}/{len(tokens)})",
            f"{worst_cosine:.6f}",
            f"{sum(seconds):.1f}",
            f"{seconds[0]:.1f}",
            f"{warm:.2f}",
            f"{warm / plain_warm:.0f}x",
            *_cost_cells(reports[-1]),
        )
    console.print(table)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", default="aby3,semi2k")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--warm", type=int, default=1, help="warm runs to time")
    parser.add_argument(
        "--emulation",
        default="protocol,ideal",
        help="emulation modes to time (secjax.Config.emulation)",
    )
    parser.add_argument("--no-minilm", action="store_true", help="skip the MiniLM table")
    parser.add_argument("--no-bert-base", action="store_true", help="skip BERT-base's cost")
    parser.add_argument(
        "--cost-only",
        action="store_true",
        help="MiniLM: cost reports and the plot only, without running the model",
    )
    parser.add_argument(
        "--gpt2-tokens", type=int, default=8, help="tokens for tiny GPT-2 to generate (at least 2)"
    )
    parser.add_argument("--no-gpt2", action="store_true", help="skip tiny GPT-2 generation")
    args = parser.parse_args()
    if args.gpt2_tokens < 2:
        parser.error("--gpt2-tokens must be at least 2 (one first step, one warm)")
    console = Console(width=160)

    if not args.no_minilm:
        minilm(args, console)
    if not args.no_bert_base:
        base = Table(
            title=f"BERT-base, {args.tokens} tokens: cost without running "
            "(PUMA, 3 machines on a LAN: 33.9 s and 10.8 GB)"
        )
        for column in ("protocol", *COST_COLUMNS):
            base.add_column(column, justify="left" if column == "protocol" else "right")
        for protocol in args.protocols.split(","):
            base.add_row(protocol, *_cost_cells(bert_base_cost(protocol, args.tokens)))
        console.print(base)
    if not args.no_gpt2:
        gpt2_generation(args, console)


if __name__ == "__main__":
    main()
