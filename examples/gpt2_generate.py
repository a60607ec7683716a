"""Greedy generation with GPT-2 under MPC, compared with plaintext greedy decoding.

    python examples/gpt2_generate.py [--protocol aby3] [--config tiny|small] [--tokens 16]

A random-init FlaxGPT2LMHeadModel (no download: ``tiny`` is 2 layers of width 64, ``small``
has GPT-2 small's shape, 124M parameters, and is slow under MPC). The weights and the prompt
are secret; each step re-runs the model on the growing prefix, right-padded to a fixed length
with an attention mask, so every step has the same shapes and reuses the compiled kernels.
The sequence length so far (the public ``position``) is known to the parties, and only the
logits at that position are revealed. Prints both token sequences and, while they agree, the
worst step's cosine similarity of the secure next-token logits to the plaintext ones.
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
from transformers import FlaxGPT2LMHeadModel, GPT2Config  # noqa: E402

import secjax  # noqa: E402

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
    first_difference = next((i for i, (a, b) in enumerate(zip(plain_tokens, secure_tokens))
                             if a != b), None)
    agreed = len(plain_tokens) if first_difference is None else first_difference + 1
    cosines = [float(np.dot(s, p) / (np.linalg.norm(s) * np.linalg.norm(p)))
               for s, p in zip(secure_logits[:agreed], plain_logits[:agreed])]
    return first_difference, min(cosines), agreed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="aby3", help="aby3 (default), semi2k or plain")
    parser.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    parser.add_argument("--tokens", type=int, default=16, help="tokens to generate")
    parser.add_argument("--prompt", default=",".join(map(str, PROMPT)),
                        help="comma-separated token ids")
    args = parser.parse_args(argv)

    console = Console()
    console.print(f"building a random-init GPT-2 ({args.config})...")
    model, params = build(args.config)
    prompt = [int(t) for t in args.prompt.split(",")]
    total = len(prompt) + args.tokens
    next_logits = make_next_logits(model)

    plain_step = jax.jit(next_logits)
    start = time.perf_counter()
    plain_tokens, plain_logits = greedy(plain_step, params, prompt, total)
    plain_seconds = time.perf_counter() - start

    secure_step = make_secure_step(next_logits, protocol=args.protocol, seed=0)
    start = time.perf_counter()
    with Progress(console=console) as progress:
        secure_tokens, secure_logits = greedy(secure_step, params, prompt, total, progress,
                                              f"secure greedy decoding ({args.protocol})")
    secure_seconds = time.perf_counter() - start

    console.print(f"prompt          {prompt}")
    console.print(f"plaintext  ({plain_seconds:6.1f} s) {plain_tokens}")
    console.print(f"secure     ({secure_seconds:6.1f} s) {secure_tokens}")
    first_difference, worst_cosine, agreed = compare(plain_tokens, plain_logits,
                                                     secure_tokens, secure_logits)
    console.print(f"next-token logits, secure vs plaintext: worst cosine {worst_cosine:.6f} "
                  f"over {agreed} steps")
    console.print("[green]identical[/green]" if first_difference is None else
                  f"[red]differ[/red] from token {first_difference}")
    return 0 if first_difference is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
