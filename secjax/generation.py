"""Greedy decoding of Hugging Face Flax causal language models with a KV cache that stays
secret between steps.

One function, :func:`decode_step`, serves the prompt (all its tokens at once) and every new
token (one at a time): it runs the model on the new tokens against the cache and returns the
argmax token and the updated cache. Under :func:`secure_decode_step` the cache's keys and
values come back as handles (:mod:`secjax.handles`) and go into the next step as they are,
so a step costs the same whatever its position; only the chosen token is revealed.

What is public and why it may be: a Hugging Face cache holds, per attention layer,
``cached_key`` and ``cached_value`` (secret: functions of the weights and the prompt) and
``cache_index``, the number of tokens written so far. The index starts at 0 and grows by the
number of tokens each step feeds, both of which the parties know (the prompt's length is
public, as every input's shape is), so the interpreter computes it in the clear and it stays
public: ``dynamic_update_slice`` writes the new keys at a public position (a local operation
on shares), and the attention mask built from it (``arange(max_length) < index``) is public.
The revealed tokens are fed back as public inputs: each step tells every party the token it
chose, and nothing else (the prompt, the weights, the logits and the cache stay secret).
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpy as np

from secjax.api import public, secure_jit


def decode_step(model) -> Callable:
    """``step(params, cache, input_ids, attention_mask, position_ids) -> (token, cache)``
    for a Hugging Face Flax causal LM (``FlaxGPT2LMHeadModel``, ``FlaxLlamaForCausalLM``...):
    the greedy next token after ``input_ids`` (batch,) and the cache with their keys and
    values written. ``attention_mask`` covers the cache's whole length."""
    def step(params, cache, input_ids, attention_mask, position_ids):
        out = model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    params=params, past_key_values=cache)
        return jnp.argmax(out.logits[:, -1], axis=-1).astype(jnp.int32), out.past_key_values

    return step


def secure_decode_step(model, **options):
    """:func:`decode_step` under :func:`secjax.secure_jit` (``options``), keeping the cache
    secret: it returns handles to the keys and values and the public write index."""
    return secure_jit(decode_step(model), secret_outputs=(False, True), **options)


def greedy(step, params, cache, prompt, new_tokens: int, *, secure: bool,
           on_step: Callable[[int], None] | None = None) -> list[int]:
    """Greedy decoding of ``new_tokens`` tokens after ``prompt`` (a list of token ids), one
    call of ``step`` (:func:`decode_step` or :func:`secure_decode_step`) for the prompt and
    one per further token. ``cache``: the model's ``init_cache(1, len(prompt) +
    new_tokens)``; ``params`` may be handles. ``secure``: pass the cache (at first), the
    mask, the positions and the revealed tokens as public and the prompt as a secret.
    ``on_step(i)`` runs after step ``i`` (0: the prompt)."""
    clear = public if secure else (lambda x: x)
    total = len(prompt) + new_tokens
    mask = clear(np.ones((1, total), np.int32))   # the cache's own index masks the rest
    ids = np.asarray([prompt], np.int32)
    positions = np.arange(len(prompt), dtype=np.int32)[None]
    cache = clear(cache) if secure else cache
    tokens = []
    for i in range(new_tokens):
        token, cache = step(params, cache, ids, mask, clear(positions))
        tokens.append(int(np.asarray(token)[0]))
        if on_step is not None:
            on_step(i)
        ids = clear(np.asarray(token, np.int32)[:, None])
        positions = np.asarray([[len(prompt) + i]], np.int32)
    return tokens
