"""Greedy generation and top-k sampling with a secret KV cache (tiny random-init GPT-2 and
LLaMA): the same tokens as plaintext decoding with the cache (and, sampling, the same seed), a
cache equal to plaintext's, and a cost per step that does not grow with the position."""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore", message=".*TensorFlow and JAX classes are deprecated.*")
transformers = pytest.importorskip("transformers")

import secjax  # noqa: E402
from secjax.generation import (  # noqa: E402
    decode_step,
    greedy,
    gumbel_top_k,
    sample_step,
    sample_top_k,
    secure_decode_step,
)

PROMPT = [5, 17, 42, 99]
NEW_TOKENS = 16


def _gpt2():
    config = transformers.GPT2Config(
        vocab_size=256,
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_inner=128,
        bos_token_id=1,
        eos_token_id=2,
    )
    return transformers.FlaxGPT2LMHeadModel(config, seed=0)


def _llama():
    config = transformers.LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return transformers.FlaxLlamaForCausalLM(config, seed=1)


MODELS = {"gpt2": _gpt2, "llama": _llama}


def _plaintext(model):
    """Tokens and final cache of plaintext greedy decoding with the cache (``jax.jit``)."""
    total = len(PROMPT) + NEW_TOKENS
    caches = []
    step = jax.jit(decode_step(model))

    def keep_cache(*args):
        token, cache = step(*args)
        caches.append(cache)
        return token, cache

    tokens = greedy(
        keep_cache, model.params, model.init_cache(1, total), PROMPT, NEW_TOKENS, secure=False
    )
    return tokens, caches[-1]


@pytest.mark.parametrize(
    "name,options",
    [
        ("gpt2", dict(protocol="aby3", emulation="ideal")),
        ("llama", dict(protocol="aby3", emulation="ideal")),
        pytest.param("gpt2", dict(protocol="aby3"), marks=pytest.mark.slow),
        pytest.param("gpt2", dict(protocol="semi2k"), marks=pytest.mark.slow),
        pytest.param("llama", dict(protocol="semi2k", emulation="ideal"), marks=pytest.mark.slow),
    ],
)
def test_secret_cache_generation_matches_plaintext(name, options):
    model = MODELS[name]()
    expected_tokens, expected_cache = _plaintext(model)
    step = secure_decode_step(model, seed=7, **options)
    weights = secjax.share(
        model.params, protocol=options["protocol"], emulation=options.get("emulation", "protocol")
    )
    reports, caches = [], []

    def secure_step(*args):
        token, cache = step(*args)
        reports.append(step.last_cost)
        caches.append(cache)
        return token, cache

    total = len(PROMPT) + NEW_TOKENS
    tokens = greedy(
        secure_step, weights, model.init_cache(1, total), PROMPT, NEW_TOKENS, secure=True
    )
    assert tokens == expected_tokens

    # the cache stayed secret (handles) except its public write index, and holds what
    # plaintext decoding's does
    for path, leaf in jax.tree_util.tree_leaves_with_path(caches[-1]):
        is_index = "cache_index" in jax.tree_util.keystr(path)
        assert isinstance(leaf, secjax.Handle) != is_index, path
    opened = secjax.reveal(caches[-1])
    for got, want in zip(jax.tree.leaves(opened), jax.tree.leaves(expected_cache)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-2, rtol=2e-2)

    # after the prompt: no sharing at all, one token revealed, the same cost at every position
    decoding = reports[1:]
    first, last = decoding[0], decoding[-1]
    assert first.phases()["sharing"].sent == [0] * len(first.bytes_per_party)
    assert first.phases()["revealing"].sent == reports[0].phases()["revealing"].sent
    assert max(last.bytes_per_party) <= 1.2 * max(first.bytes_per_party)
    for report in decoding:
        assert report.bytes_per_party == first.bytes_per_party
        assert report.rounds == first.rounds


SEED = 3
VOCAB = 256  # _gpt2's


@pytest.mark.parametrize(
    "k,options",
    [
        (5, dict(protocol="aby3", emulation="ideal")),
        (1, dict(protocol="aby3", emulation="ideal")),
        pytest.param(5, dict(protocol="aby3"), marks=pytest.mark.slow),
        pytest.param(4, dict(protocol="semi2k"), marks=pytest.mark.slow),
    ],
)
def test_top_k_sampling_matches_plaintext_with_the_same_seed(k, options):
    model = _gpt2()
    total = len(PROMPT) + NEW_TOKENS
    expected = sample_top_k(
        jax.jit(sample_step(model, k)),
        model.params,
        model.init_cache(1, total),
        PROMPT,
        NEW_TOKENS,
        vocab_size=VOCAB,
        seed=SEED,
        secure=False,
    )
    step = secure_decode_step(model, k=k, seed=7, **options)
    weights = secjax.share(
        model.params, protocol=options["protocol"], emulation=options.get("emulation", "protocol")
    )
    reports = []

    def secure_step(*args):
        out = step(*args)
        reports.append(step.last_cost)
        return out

    tokens = sample_top_k(
        secure_step,
        weights,
        model.init_cache(1, total),
        PROMPT,
        NEW_TOKENS,
        vocab_size=VOCAB,
        seed=SEED,
        secure=True,
    )
    assert tokens == expected
    if k == 1:  # the most likely of one: greedy decoding
        assert tokens == _plaintext(model)[0]
    else:  # the noise made a difference (else this test would not test sampling)
        assert tokens != _plaintext(model)[0]
        assert len(set(tokens)) > 1
    decoding = reports[1:]
    for report in decoding:
        assert report.bytes_per_party == decoding[0].bytes_per_party
        assert report.rounds == decoding[0].rounds
    assert decoding[0].phases()["sharing"].sent == [0] * len(decoding[0].bytes_per_party)


def test_sampling_with_another_seed_draws_other_tokens():
    model = _gpt2()
    total = len(PROMPT) + NEW_TOKENS
    step = jax.jit(sample_step(model, 5))
    draws = {
        seed: sample_top_k(
            step,
            model.params,
            model.init_cache(1, total),
            PROMPT,
            NEW_TOKENS,
            vocab_size=VOCAB,
            seed=seed,
            secure=False,
        )
        for seed in (SEED, SEED + 1)
    }
    assert draws[SEED] != draws[SEED + 1]
    with pytest.raises(ValueError, match="temperature must be positive"):
        sample_top_k(
            step,
            model.params,
            model.init_cache(1, total),
            PROMPT,
            1,
            vocab_size=VOCAB,
            seed=SEED,
            temperature=0.0,
            secure=False,
        )


@pytest.mark.parametrize("vocab,k", [(16, 3), (16, 8), (256, 5), (256, 12)])
def test_gumbel_top_k_is_the_noisy_argmax_among_the_top_k(vocab, k):
    """Both ways (argmax rounds for small k, the sort otherwise), plaintext on tied logits
    and secure, against top_k then the argmax of the noisy top-k logits."""
    rng = np.random.default_rng(vocab + k)
    pick = jax.jit(gumbel_top_k, static_argnums=2)
    for _ in range(10):
        logits = np.round(rng.normal(size=(2, vocab)), 1).astype(np.float32)  # ties
        noise = rng.gumbel(size=(2, vocab)).astype(np.float32)
        values, ids = jax.lax.top_k(logits, k)
        noisy = np.asarray(values) + np.take_along_axis(noise, np.asarray(ids), -1)
        expected = np.take_along_axis(np.asarray(ids), noisy.argmax(-1)[:, None], -1)[:, 0]
        np.testing.assert_array_equal(pick(logits, noise, k), expected)
    logits = rng.normal(size=(2, vocab)).astype(np.float32)
    secure = secjax.secure_jit(
        lambda x, n: gumbel_top_k(x, n, k), protocol="aby3", emulation="ideal"
    )
    np.testing.assert_array_equal(secure(logits, secjax.public(noise)), pick(logits, noise, k))
