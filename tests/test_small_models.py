"""Small networks end to end: secure output within relative error 1e-3 of ``jax.jit``."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import secjax


def relative_error(secure, plain) -> float:
    secure, plain = np.asarray(secure, np.float64), np.asarray(plain, np.float64)
    return float(np.linalg.norm(secure - plain) / np.linalg.norm(plain))


class MLP(nn.Module):
    """Two dense layers with a square activation (no comparison needed)."""

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(32)(x)
        return nn.Dense(10)(h * h * 0.1 + h)


def test_two_layer_mlp(protocol):
    model = MLP()
    x = jax.random.normal(jax.random.key(0), (8, 20))
    params = model.init(jax.random.key(1), x)
    secure = secjax.secure_jit(model.apply, **protocol)(params, x)
    assert relative_error(secure, jax.jit(model.apply)(params, x)) < 1e-3


def test_conv_layer(protocol):
    model = nn.Conv(features=4, kernel_size=(3, 3), strides=(1, 1), padding="SAME")
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    params = model.init(jax.random.key(1), x)
    secure = secjax.secure_jit(model.apply, **protocol)(params, x)
    assert relative_error(secure, jax.jit(model.apply)(params, x)) < 1e-3


def attention_without_softmax(params, x, mask):
    """One attention head with its scores masked the way Hugging Face BERT masks them,
    ``scores + (1 - mask) * finfo.min``; a scaled identity stands in for the softmax."""
    q, k, v = (x @ params[name] for name in ("q", "k", "v"))
    scores = q @ k.T / jnp.sqrt(q.shape[-1]).astype(x.dtype)
    masked = scores + (1.0 - mask[None, :].astype(x.dtype)) * jnp.finfo(jnp.float32).min
    return masked, (scores * mask[None, :]) @ v


def causal_attention_without_softmax(params, x):
    """The GPT-2 form: a public causal mask selects ``finfo.min`` into the scores."""
    q, k, v = (x @ params[name] for name in ("q", "k", "v"))
    scores = q @ k.T
    causal = jnp.tril(jnp.ones((x.shape[0], x.shape[0]), bool))
    return jnp.where(causal, scores, jnp.finfo(jnp.float32).min), jnp.where(causal, scores, 0) @ v


def _attention_inputs():
    keys = jax.random.split(jax.random.key(0), 4)
    d = 16
    params = {n: jax.random.normal(k, (d, d)) / 4 for n, k in zip("qkv", keys)}
    return params, jax.random.normal(keys[3], (6, d))


def test_attention_block_with_finfo_min_mask(protocol):
    params, x = _attention_inputs()
    mask = jnp.array([1, 1, 1, 1, 0, 0])
    plain_masked, plain_out = jax.jit(attention_without_softmax)(params, x, mask)
    for m in (mask, secjax.public(mask)):
        masked, out = secjax.secure_jit(attention_without_softmax, **protocol)(params, x, m)
        assert relative_error(out, plain_out) < 1e-3
        assert relative_error(masked[:, :4], plain_masked[:, :4]) < 1e-3
        assert np.all(masked[:, 4:] < -1e9), "masked scores must saturate, not wrap around"


def test_causal_attention_block(protocol):
    params, x = _attention_inputs()
    masked, out = secjax.secure_jit(causal_attention_without_softmax, **protocol)(params, x)
    plain_masked, plain_out = jax.jit(causal_attention_without_softmax)(params, x)
    assert relative_error(out, plain_out) < 1e-3
    causal = np.tril(np.ones((6, 6), bool))
    assert relative_error(masked[causal], plain_masked[causal]) < 1e-3
    assert np.all(masked[~causal] < -1e9), "masked scores must saturate, not wrap around"
