"""Greedy generation and top-k sampling with GPT-2 under MPC with a secret KV cache, beside
the recompute-the-prefix way and plaintext.

    python examples/gpt2_generate.py [--protocol aby3] [--emulation protocol|ideal]
                                     [--config tiny|small] [--tokens 16] [--no-recompute]
                                     [--top-k K [--seed S] [--temperature T]]

A random-init FlaxGPT2LMHeadModel (no download: ``tiny`` is 2 layers of width 64, ``small``
has GPT-2 small's shape, 124M parameters, and is slow under MPC). The owner's weights are
shared once (handles); the prompt is secret.

- **with the cache** (:mod:`secjax.generation`): the first call runs the prompt and returns
  the first token and the KV cache, whose keys and values stay secret as handles; each
  further call feeds the one new token (revealed, so public) against the cache. Only the
  chosen token is revealed; every step costs the same whatever its position.
- **recomputing the prefix**: each step re-runs the model on the growing prefix (secret ids),
  right-padded to a fixed length with an attention mask, so every step has the same shapes
  and reuses the compiled kernels; the sequence length so far (the public ``position``) is
  known to the parties, and the logits at that position are revealed.

- **top-k sampling** (``--top-k K``, with the cache): the token is drawn from the K most
  likely by Gumbel-max with public noise from the seed ``--seed`` that every party holds
  (:mod:`secjax.generation` says how, and what the public noise reveals); checked against
  ``jax.jit`` sampling with the same seed.

Prints, per step, the time, the busiest party's bytes and the rounds of each way and the
time of ``jax.jit`` doing each, then whether the tokens agree with plaintext decoding.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", message=".*TensorFlow and JAX classes are deprecated.*")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402
from transformers import FlaxGPT2LMHeadModel, GPT2Config  # noqa: E402

import secjax  # noqa: E402
from secjax import generation  # noqa: E402
from secjax.runtime.cost import format_bytes  # noqa: E402

CONFIGS = {
    "tiny": dict(vocab_size=256, n_positions=64, n_embd=64, n_layer=2, n_head=4, n_inner=128),
    "small": dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12),
}
PROMPT = (5, 17, 42, 99)


def build(config_name: str, seed: int = 0):
    config = GPT2Config(**CONFIGS[config_name], bos_token_id=1, eos_token_id=2)
    model = FlaxGPT2LMHeadModel(config, seed=seed)
    return model, model.params


def make_next_logits(model):
    def next_logits(params, input_ids, attention_mask, position):
        """Logits of the token after ``position`` (batch, vocab)."""
        logits = model(input_ids=input_ids, attention_mask=attention_mask, params=params).logits
        return jax.lax.dynamic_index_in_dim(logits, position, axis=1, keepdims=False)

    return next_logits


def greedy(step, params, prompt, total: int, progress=None, label=""):
    """Greedy decoding: run ``step`` on the prefix padded to ``total`` tokens, append the
    argmax, repeat until ``total`` tokens. Returns the generated tokens and each step's
    logits."""
    n = len(prompt)
    ids = np.zeros((1, total), np.int32)
    ids[0, :n] = prompt
    generated, steps = [], []
    task = progress.add_task(label, total=total - n) if progress is not None else None
    for position in range(n - 1, total - 1):
        mask = (np.arange(total) <= position).astype(np.int32)[None]
        logits = step(params, jnp.asarray(ids), jnp.asarray(mask), np.int32(position))
        logits = np.asarray(logits)[0]
        token = int(np.argmax(logits))
        steps.append(logits)
        ids[0, position + 1] = token
        generated.append(token)
        if task is not None:
            progress.advance(task)
    return generated, steps


def make_secure_step(next_logits, **options):
    """``next_logits`` under :func:`secjax.secure_jit` (``options``), called like it: the
    weights and tokens secret, the mask and the position public (they only say how long the
    prefix is). The :class:`secjax.SecureFunction` is the step's ``secure`` attribute."""
    secure = secjax.secure_jit(next_logits, **options)

    def secure_step(params, ids, mask, position):
        return secure(params, ids, secjax.public(mask), secjax.public(position))

    secure_step.secure = secure
    return secure_step


def compare(plain_tokens, plain_logits, secure_tokens, secure_logits):
    """``(first_difference, worst_cosine, steps_compared)``: the index of the first token
    that differs (None if none) and the worst cosine of the secure next-token logits to the
    plaintext ones, over the steps up to and including that token (later steps see
    different prefixes)."""
    first_difference = next(
        (i for i, (a, b) in enumerate(zip(plain_tokens, secure_tokens)) if a != b), None
    )
    agreed = len(plain_tokens) if first_difference is None else first_difference + 1
    cosines = [
        float(np.dot(s, p) / (np.linalg.norm(s) * np.linalg.norm(p)))
        for s, p in zip(secure_logits[:agreed], plain_logits[:agreed])
    ]
    return first_difference, min(cosines), agreed


class StepLog:
    """Each step's seconds and (for a secure step) bytes of the busiest party and rounds."""

    def __init__(self, secure=None):
        self.secure = secure
        self.seconds, self.bytes, self.rounds = [], [], []

    def wrap(self, step):
        """``step`` timed (results ready), its cost noted."""

        def timed(*args):
            start = time.perf_counter()
            out = jax.block_until_ready(step(*args))
            self.seconds.append(time.perf_counter() - start)
            if self.secure is not None:
                self.bytes.append(self.secure.last_cost.total.max_sent)
                self.rounds.append(self.secure.last_cost.rounds)
            return out

        return timed


def compare_generation(
    model,
    prompt,
    new_tokens: int,
    options: dict,
    console,
    recompute: bool = True,
    top_k: int | None = None,
    sampling_seed: int = 0,
    temperature: float = 1.0,
) -> bool:
    """Greedy decoding of ``new_tokens`` tokens after ``prompt`` with the secret cache (and,
    with ``recompute``, by re-running the padded prefix; with ``top_k``, top-k sampling with
    the cache from ``sampling_seed``), each beside ``jax.jit`` doing the same; prints the
    per-step table. Returns whether the secure tokens equal plaintext's."""
    total = len(prompt) + new_tokens
    sharer = secjax.secure_jit(lambda t: t, secret_outputs=True, **options)
    start = time.perf_counter()
    weights = sharer(model.params)
    console.print(
        f"weights shared once: {time.perf_counter() - start:.1f} s, busiest party "
        f"{format_bytes(sharer.last_cost.total.max_sent)}, "
        f"{sharer.last_cost.rounds} rounds"
    )

    logs = {"jit, cache": StepLog()}
    step = jax.jit(generation.decode_step(model))
    plain_tokens = generation.greedy(
        logs["jit, cache"].wrap(step),
        model.params,
        model.init_cache(1, total),
        prompt,
        new_tokens,
        secure=False,
    )
    secure_step = generation.secure_decode_step(model, **options)
    logs["cache"] = StepLog(secure_step)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("secure greedy decoding, secret cache", total=new_tokens)
        secure_tokens = generation.greedy(
            logs["cache"].wrap(secure_step),
            weights,
            model.init_cache(1, total),
            prompt,
            new_tokens,
            secure=True,
            on_step=lambda i: progress.advance(task),
        )
    same = secure_tokens == plain_tokens
    lines = [
        f"with the cache: plaintext {plain_tokens}",
        f"                secure    {secure_tokens} "
        + ("[green]identical[/green]" if same else "[red]differ[/red]"),
    ]
    if recompute:
        next_logits = make_next_logits(model)
        logs["jit, recompute"] = StepLog()
        plain_prefix, _ = greedy(
            logs["jit, recompute"].wrap(jax.jit(next_logits)), model.params, prompt, total
        )
        prefix_step = make_secure_step(next_logits, **options)
        logs["recompute"] = StepLog(prefix_step.secure)
        with Progress(console=console, transient=True) as progress:
            secure_prefix, _ = greedy(
                logs["recompute"].wrap(prefix_step),
                weights,
                prompt,
                total,
                progress,
                "secure greedy, recomputing",
            )
        same_prefix = secure_prefix == plain_prefix
        same = same and same_prefix
        lines += [
            f"recomputing:    plaintext {plain_prefix}",
            f"                secure    {secure_prefix} "
            + ("[green]identical[/green]" if same_prefix else "[red]differ[/red]"),
        ]
    if top_k is not None:
        way = f"top-{top_k}"
        sampling = dict(
            vocab_size=model.config.vocab_size, seed=sampling_seed, temperature=temperature
        )
        logs[f"jit, {way}"] = StepLog()
        plain_sampled = generation.sample_top_k(
            logs[f"jit, {way}"].wrap(jax.jit(generation.sample_step(model, top_k))),
            model.params,
            model.init_cache(1, total),
            prompt,
            new_tokens,
            secure=False,
            **sampling,
        )
        sampler = generation.secure_decode_step(model, k=top_k, **options)
        logs[way] = StepLog(sampler)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"secure {way} sampling, secret cache", total=new_tokens)
            secure_sampled = generation.sample_top_k(
                logs[way].wrap(sampler),
                weights,
                model.init_cache(1, total),
                prompt,
                new_tokens,
                secure=True,
                on_step=lambda i: progress.advance(task),
                **sampling,
            )
        same_sampled = secure_sampled == plain_sampled
        same = same and same_sampled
        lines += [
            f"{way} (seed {sampling_seed}, temperature {temperature}): plaintext {plain_sampled}",
            f"{' ' * len(way)}{' ' * (len(str(sampling_seed)) + len(str(temperature)) + 23)}"
            f"secure    {secure_sampled} "
            + ("[green]identical[/green]" if same_sampled else "[red]differ[/red]"),
        ]
    console.print(generation_table(logs, options, len(prompt)))
    for line in lines:
        console.print(line)
    return same


def generation_table(logs: dict, options: dict, prompt_length: int) -> Table:
    """One row per step: seconds, bytes and rounds of each way (``logs``: :class:`StepLog`
    by way: ``cache``, ``recompute`` and ``top-K`` secure, ``jit, ...`` the same by
    ``jax.jit``), then
    the warm mean (steps after the second)."""
    mode = options.get("emulation", "protocol")
    table = Table(
        title=f"generation under {options.get('protocol', 'aby3')} "
        f"({mode} emulation), weights pre-shared; step 1 runs the "
        f"{prompt_length}-token prompt and compiles"
    )
    table.add_column("step", justify="right")
    for way, log in logs.items():
        table.add_column(f"{way} {'s' if log.secure else 'ms'}", justify="right")
        if log.secure is not None:
            table.add_column(f"{way} sent", justify="right")
            table.add_column(f"{way} rounds", justify="right")

    def cells(log, index):
        picked = log.seconds[index] if isinstance(index, int) else np.mean(log.seconds[2:])
        row = [f"{picked:.2f}" if log.secure else f"{picked * 1e3:.2f}"]
        if log.secure is not None:
            row += (
                [format_bytes(log.bytes[index]), str(log.rounds[index])]
                if isinstance(index, int)
                else ["", ""]
            )
        return row

    steps = len(next(iter(logs.values())).seconds)
    for i in range(steps):
        table.add_row(str(i + 1), *[c for log in logs.values() for c in cells(log, i)])
    if steps > 2:
        table.add_row("warm mean", *[c for log in logs.values() for c in cells(log, None)])
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="aby3", help="aby3 (default), semi2k or plain")
    parser.add_argument("--emulation", default="protocol", choices=["protocol", "ideal"])
    parser.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    parser.add_argument("--tokens", type=int, default=16, help="tokens to generate")
    parser.add_argument(
        "--prompt", default=",".join(map(str, PROMPT)), help="comma-separated token ids"
    )
    parser.add_argument(
        "--no-recompute", action="store_true", help="skip the recompute-the-prefix way"
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=None,
        metavar="K",
        help="also sample from the K most likely tokens (Gumbel-max)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="the sampling seed every party holds (with --top-k)"
    )
    parser.add_argument("--temperature", type=float, default=1.0, help="with --top-k")
    args = parser.parse_args(argv)

    console = Console(width=150)
    console.print(f"building a random-init GPT-2 ({args.config})...")
    model, _ = build(args.config)
    prompt = [int(t) for t in args.prompt.split(",")]
    options = dict(protocol=args.protocol, emulation=args.emulation, seed=0)
    same = compare_generation(
        model,
        prompt,
        args.tokens,
        options,
        console,
        recompute=not args.no_recompute,
        top_k=args.top_k,
        sampling_seed=args.seed,
        temperature=args.temperature,
    )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
