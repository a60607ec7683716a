"""Greedy decoding and top-k sampling of Hugging Face Flax causal language models with a KV
cache that stays secret between steps.

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

Top-k sampling (:func:`sample_step`, :func:`sample_top_k`) is the Gumbel-max trick on the
secret logits: public noise ``g``, one value per vocabulary entry drawn from a seed every
party holds, is added to the logits (a local operation), the k largest logits are found
(:func:`gumbel_top_k`: k rounds of argmax, or the oblivious sorting network of
:mod:`secjax.primitives.sorting` for larger k), and the token is the id of the largest noisy
logit among them. With ``g`` i.i.d. standard Gumbel (times the temperature) this draws
token i of the top k with probability ``softmax(logits[top k] / temperature)_i`` exactly
(Gumbel, 1954; e.g. Maddison et al., "A* sampling", 2014), so it needs no exponential, no
division and no truncation beyond the model's: an argmax over k and a pick at a secret
position among k after finding the top k. A softmax and an inverse-CDF draw would cost k
exponentials, a reciprocal and a prefix sum under MPC and carry their approximation error
into the distribution; Gumbel-max is cheaper and exact in distribution. The noise is
indexed by token id, not by rank, so two nearly tied logits that the fixed-point error puts
in the other order still carry their own noise: the secure run and ``jax.jit`` of the same
step with the same seed choose the same tokens unless the noisy logits of two top-k tokens
(or the k-th and (k+1)-th logits) are within the fixed-point error, as greedy decoding's
argmax is.

What sampling with public noise reveals: the noise is known to every party, and the revealed
token is a deterministic function of the secret logits and that noise. So, as greedy
decoding reveals that the token has the largest logit, a sampled token t reveals that it is
among the k largest and that ``logit_t + g_t > logit_s + g_s`` for every other top-k token s:
inequalities between the secret logits with known offsets, which is more than a draw with
secret randomness would tell (there the token is only evidence, weighed by its probability).
E.g. when t's noise is far below the others', the parties learn that t's logit stands far
above the rest of the top k. Nothing else is revealed (not the logits, not which other
tokens are in the top k). Secret noise (uniforms shared jointly, through secure logarithms)
would remove this leak at the cost of two logarithms per vocabulary entry; not done.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from secjax.api import public, secure_jit


def _last_logits(model, params, cache, input_ids, attention_mask, position_ids):
    """The model on ``input_ids`` against ``cache``: the logits after the last of them
    (batch, vocab) and the cache with their keys and values written."""
    out = model(
        input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        params=params,
        past_key_values=cache,
    )
    return out.logits[:, -1], out.past_key_values


def decode_step(model) -> Callable:
    """``step(params, cache, input_ids, attention_mask, position_ids) -> (token, cache)``
    for a Hugging Face Flax causal LM (``FlaxGPT2LMHeadModel``, ``FlaxLlamaForCausalLM``...):
    the greedy next token after ``input_ids`` (batch,) and the cache with their keys and
    values written. ``attention_mask`` covers the cache's whole length."""

    def step(params, cache, input_ids, attention_mask, position_ids):
        logits, cache = _last_logits(model, params, cache, input_ids, attention_mask, position_ids)
        return jnp.argmax(logits, axis=-1).astype(jnp.int32), cache

    return step


def sample_step(model, k: int) -> Callable:
    """``step(params, cache, input_ids, attention_mask, position_ids, noise) -> (token,
    cache)``: as :func:`decode_step`, but the token is drawn from the ``k`` most likely by
    Gumbel-max (module docstring): among the ``k`` largest logits, the id of the largest
    ``logit + noise``; ``noise`` (batch, vocab) is :func:`gumbel_noise`."""

    def step(params, cache, input_ids, attention_mask, position_ids, noise):
        logits, cache = _last_logits(model, params, cache, input_ids, attention_mask, position_ids)
        return gumbel_top_k(logits, noise, k), cache

    return step


def gumbel_top_k(logits, noise, k: int):
    """The token ids (batch,) drawn from the ``k`` largest of ``logits`` (batch, vocab) by
    Gumbel-max with ``noise`` (batch, vocab): the id of the largest ``logit + noise`` among
    the k largest logits (the lower id first among tied logits, as ``top_k``).

    Two ways to find the k largest, chosen by k against the vocabulary (both exact, and
    equal on every input): for small k, k rounds of argmax, each followed by a one-hot
    equality test and masking the found logit below the smallest; otherwise the whole
    vocabulary sorted by the bitonic network, carrying the noisy logits and the ids. Under
    aby3 (cost reports, noise public, k = 5): 256 entries, 133,335 B and 637 rounds by
    argmax rounds against 664,577 B and 811 by the sort; GPT-2's 50,257, 26.1 MB and 1165
    rounds against 641.7 MB and 2911. An argmax round costs about log2(vocab) + 1 rounds of
    comparisons and the sort log2(vocab) (log2(vocab) + 1) / 2 layers, so argmax rounds are
    used while k < log2(vocab)."""
    ids = jax.lax.broadcasted_iota(jnp.int32, logits.shape, 1)
    noisy = logits + noise
    if k >= max(logits.shape[-1] - 1, 1).bit_length():
        _, noisy, ids = jax.lax.sort((-logits, noisy, ids), dimension=1, is_stable=True, num_keys=1)
        candidates, candidate_ids = noisy[:, :k], ids[:, :k]
    else:
        floor = jnp.min(logits, axis=-1, keepdims=True) - 1
        picked, picked_ids = [], []
        for _ in range(k):
            best = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            hot = ids == best[:, None]
            picked.append(jnp.sum(jnp.where(hot, noisy, 0), axis=-1))
            picked_ids.append(best)
            logits = jnp.where(hot, floor, logits)
        candidates, candidate_ids = jnp.stack(picked, -1), jnp.stack(picked_ids, -1)
    rank = jnp.argmax(candidates, axis=-1)
    return jnp.take_along_axis(candidate_ids, rank[:, None], axis=-1)[:, 0]


def gumbel_noise(seed: int, index: int, vocab_size: int, temperature: float = 1.0) -> np.ndarray:
    """The public noise of sampling step ``index`` (batch 1, ``vocab_size``): standard
    Gumbel draws from ``seed`` (which every party holds) and the step index, times
    ``temperature``. Drawn in the clear, so a secure run and a plaintext one with the same
    seed add the same noise."""
    if temperature <= 0:
        raise ValueError(
            f"temperature must be positive (got {temperature}); greedy decoding "
            "is the limit at 0: use decode_step and greedy"
        )
    rng = np.random.default_rng([seed, index])
    return (temperature * rng.gumbel(size=(1, vocab_size))).astype(np.float32)


def secure_decode_step(model, *, k: int | None = None, **options):
    """:func:`decode_step` (or with ``k``, :func:`sample_step`) under
    :func:`secjax.secure_jit` (``options``), keeping the cache secret: it returns handles to
    the keys and values and the public write index."""
    step = decode_step(model) if k is None else sample_step(model, k)
    return secure_jit(step, secret_outputs=(False, True), **options)


def greedy(
    step,
    params,
    cache,
    prompt,
    new_tokens: int,
    *,
    secure: bool,
    on_step: Callable[[int], None] | None = None,
) -> list[int]:
    """Greedy decoding of ``new_tokens`` tokens after ``prompt`` (a list of token ids), one
    call of ``step`` (:func:`decode_step` or :func:`secure_decode_step`) for the prompt and
    one per further token. ``cache``: the model's ``init_cache(1, len(prompt) +
    new_tokens)``; ``params`` may be handles. ``secure``: pass the cache (at first), the
    mask, the positions and the revealed tokens as public and the prompt as a secret.
    ``on_step(i)`` runs after step ``i`` (0: the prompt)."""
    return _decode(step, params, cache, prompt, new_tokens, secure=secure, on_step=on_step)


def sample_top_k(
    step,
    params,
    cache,
    prompt,
    new_tokens: int,
    *,
    vocab_size: int,
    seed: int,
    temperature: float = 1.0,
    secure: bool,
    on_step: Callable[[int], None] | None = None,
) -> list[int]:
    """Top-k sampling of ``new_tokens`` tokens after ``prompt``: as :func:`greedy`, with
    ``step`` a :func:`sample_step` (or :func:`secure_decode_step` with ``k``) and step ``i``
    given :func:`gumbel_noise` ``(seed, i, vocab_size, temperature)`` as a public input."""
    return _decode(
        step,
        params,
        cache,
        prompt,
        new_tokens,
        secure=secure,
        on_step=on_step,
        extra=lambda i: (gumbel_noise(seed, i, vocab_size, temperature),),
    )


def _decode(
    step,
    params,
    cache,
    prompt,
    new_tokens: int,
    *,
    secure: bool,
    on_step,
    extra: Callable[[int], tuple] = lambda i: (),
) -> list[int]:
    """The decoding loop of :func:`greedy` and :func:`sample_top_k`; ``extra(i)``: step
    ``i``'s further (public) arguments."""
    clear = public if secure else (lambda x: x)
    total = len(prompt) + new_tokens
    mask = clear(np.ones((1, total), np.int32))  # the cache's own index masks the rest
    ids = np.asarray([prompt], np.int32)
    positions = np.arange(len(prompt), dtype=np.int32)[None]
    cache = clear(cache) if secure else cache
    tokens = []
    for i in range(new_tokens):
        token, cache = step(params, cache, ids, mask, clear(positions), *map(clear, extra(i)))
        tokens.append(int(np.asarray(token)[0]))
        if on_step is not None:
            on_step(i)
        ids = clear(np.asarray(token, np.int32)[:, None])
        positions = np.asarray([[len(prompt) + i]], np.int32)
    return tokens
