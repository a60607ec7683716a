"""Small programs for trying the networked runtime (``secjax launch --program ...``).

Each returns a :class:`secjax.network.Program` with concrete demo inputs: the model weights
are ``private`` to party 0 (the model owner), the input ``x`` is unmarked, so it belongs to
the cluster's ``input_party`` (the client, party 1 in clusters made by ``secjax keygen``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

import secjax
from secjax.network import Program


class MLP(nn.Module):
    """Two dense layers with a square activation."""

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(16)(x)
        return nn.Dense(4)(h * h * 0.1 + h)


class AttentionBlock(nn.Module):
    """A tiny BERT-like encoder block: multi-head self-attention with a padding mask,
    residual and layer norm, then a GELU feed-forward layer, residual and layer norm."""

    heads: int = 2

    @nn.compact
    def __call__(self, x, mask):
        seq, hidden = x.shape
        head = hidden // self.heads
        q, k, v = (
            nn.Dense(hidden, name=n)(x).reshape(seq, self.heads, head).transpose(1, 0, 2)
            for n in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 2, 1) / jnp.sqrt(head).astype(x.dtype)
        scores = scores + (1.0 - mask[None, None, :]) * jnp.finfo(jnp.float32).min
        ctx = (jax.nn.softmax(scores, axis=-1) @ v).transpose(1, 0, 2).reshape(seq, hidden)
        x = nn.LayerNorm(name="ln1")(x + nn.Dense(hidden, name="out")(ctx))
        ff = nn.Dense(hidden, name="ff2")(
            jax.nn.gelu(nn.Dense(2 * hidden, name="ff1")(x), approximate=False)
        )
        return nn.LayerNorm(name="ln2")(x + ff)


def _mlp_apply(params, x):
    return MLP().apply(params, x)


def _attention_apply(params, x, mask):
    return AttentionBlock().apply(params, x, mask)


def mlp(batch: int = 4, features: int = 8) -> Program:
    x = jax.random.normal(jax.random.key(0), (batch, features))
    params = MLP().init(jax.random.key(1), x)
    return Program(_mlp_apply, (secjax.private(params, 0), x))


def attention(seq: int = 8, hidden: int = 16) -> Program:
    x = jax.random.normal(jax.random.key(0), (seq, hidden))
    mask = jnp.ones((seq,), jnp.float32).at[-2:].set(0.0)  # two padding positions
    params = AttentionBlock().init(jax.random.key(1), x, mask)
    return Program(_attention_apply, (secjax.private(params, 0), x, secjax.public(mask)))


class AttentionHead(nn.Module):
    """Single-head self-attention with a padding mask, softmax and an output projection
    with a residual: the smallest BERT-like attention block (quick to compile)."""

    @nn.compact
    def __call__(self, x, mask):
        hidden = x.shape[-1]
        q, k, v = (nn.Dense(hidden, name=n)(x) for n in ("query", "key", "value"))
        scores = q @ k.T / jnp.sqrt(hidden).astype(x.dtype)
        scores = scores + (1.0 - mask[None, :]) * jnp.finfo(jnp.float32).min
        return x + nn.Dense(hidden, name="out")(jax.nn.softmax(scores, axis=-1) @ v)


def _head_apply(params, x, mask):
    return AttentionHead().apply(params, x, mask)


def attention_head(seq: int = 4, hidden: int = 8) -> Program:
    x = jax.random.normal(jax.random.key(0), (seq, hidden))
    mask = jnp.ones((seq,), jnp.float32).at[-1:].set(0.0)  # one padding position
    params = AttentionHead().init(jax.random.key(1), x, mask)
    return Program(_head_apply, (secjax.private(params, 0), x, secjax.public(mask)))


# A vocabulary just large enough that the embedding lookup computes in the 32-bit ring, as a
# real model's does (secjax.primitives.lookup.NARROW_MIN_POSITIONS).
BERT_VOCAB = 4100


def _tiny_bert():
    """A random-init FlaxBertModel small enough to compile quickly (2 layers, hidden 32)."""
    from transformers import BertConfig, FlaxBertModel  # imported here: mlp stays quick

    config = BertConfig(
        vocab_size=BERT_VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return FlaxBertModel(config, seed=1)


def _bert_apply(params, input_ids, attention_mask):
    return _tiny_bert()(input_ids, attention_mask=attention_mask, params=params).last_hidden_state


def bert(seq: int = 8) -> Program:
    """A tiny Hugging Face FlaxBertModel (random weights): the owner's weights private to
    party 0, the client's token ids (private, one-hot at the client) and a public padding
    mask."""
    ids = jax.random.randint(jax.random.key(0), (1, seq), 0, BERT_VOCAB)
    mask = jnp.ones((1, seq), jnp.int32).at[:, -2:].set(0)
    return Program(_bert_apply, (secjax.private(_tiny_bert().params, 0), ids, secjax.public(mask)))
