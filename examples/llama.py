"""A tiny random-init LLaMA under MPC: one forward pass compared with plaintext (cosine
similarity of every position's logits), then a few greedy tokens.

    python examples/llama.py [--protocol aby3] [--tokens 4]

The config is tiny (2 layers, width 64, 4 query heads sharing 2 key/value heads, RMSNorm,
SiLU gated MLP, rotary positions); no weights are downloaded. Weights and tokens are secret.
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
from transformers import FlaxLlamaForCausalLM, LlamaConfig  # noqa: E402

import secjax  # noqa: E402

CONFIG = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)


def min_row_cosine(a, b) -> float:
    a = np.asarray(a, np.float64).reshape(-1, np.shape(a)[-1])
    b = np.asarray(b, np.float64).reshape(-1, np.shape(b)[-1])
    cos = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return float(np.min(cos))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="aby3", help="aby3 (default), semi2k or plain")
    parser.add_argument("--tokens", type=int, default=4, help="greedy tokens to generate")
    args = parser.parse_args(argv)
    console = Console()

    model = FlaxLlamaForCausalLM(LlamaConfig(**CONFIG), seed=0)
    params = model.params
    prompt = [1, 23, 57, 101, 7, 200, 34, 88]
    total = len(prompt) + args.tokens

    def next_logits(params, input_ids, attention_mask, position):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, params=params).logits
        return jax.lax.dynamic_index_in_dim(logits, position, axis=1, keepdims=False)

    def all_logits(params, input_ids):
        return model(input_ids=input_ids, params=params).logits

    # 1. one forward pass over the prompt
    ids = jnp.asarray([prompt], jnp.int32)
    plain = jax.jit(all_logits)(params, ids)
    start = time.perf_counter()
    secure = secjax.secure_jit(all_logits, protocol=args.protocol, seed=0)(params, ids)
    cosine = min_row_cosine(secure, plain)
    console.print(f"forward: {time.perf_counter() - start:.1f} s under {args.protocol}; "
                  f"min cosine over positions {cosine:.5f}; next-token argmax "
                  f"{'agrees' if np.argmax(secure[0, -1]) == np.argmax(plain[0, -1]) else 'differs'}")

    # 2. greedy tokens, on the prefix right-padded to a fixed length (shapes never change)
    secure_step = secjax.secure_jit(next_logits, protocol=args.protocol, seed=0)
    plain_step = jax.jit(next_logits)
    outputs, seconds = {}, {}
    with Progress(console=console) as progress:
        for label, step, wrap in [("plaintext", plain_step, lambda x: x),
                                  ("secure", secure_step, secjax.public)]:
            buf = np.zeros((1, total), np.int32)
            buf[0, :len(prompt)] = prompt
            task = progress.add_task(f"{label} greedy", total=args.tokens)
            start = time.perf_counter()
            for position in range(len(prompt) - 1, total - 1):
                mask = (np.arange(total) <= position).astype(np.int32)[None]
                logits = step(params, jnp.asarray(buf), wrap(jnp.asarray(mask)),
                              wrap(np.int32(position)))
                buf[0, position + 1] = int(np.argmax(np.asarray(logits)[0]))
                progress.advance(task)
            outputs[label] = buf[0, len(prompt):].tolist()
            seconds[label] = time.perf_counter() - start
    for label in ("plaintext", "secure"):
        console.print(f"{label:<9} ({seconds[label]:6.1f} s) tokens {outputs[label]}")
    same = outputs["plaintext"] == outputs["secure"]
    console.print("[green]identical[/green]" if same else "[red]differ[/red]")
    return 0 if same and cosine >= 0.999 else 1


if __name__ == "__main__":
    raise SystemExit(main())
