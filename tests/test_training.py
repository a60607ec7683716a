"""Training under ``secure_jit``: gradients (``jax.grad``, ``value_and_grad``, ``vjp``) of
logistic regression and a Flax MLP with a softmax cross-entropy on secret integer labels,
and optax's SGD and Adam steps, against the same computation under ``jax.jit``."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_close, run_both

import secjax

RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 6)).astype(np.float32)
BINARY = (RNG.random(16) > 0.5).astype(np.float32)
LABELS = RNG.integers(0, 4, 16).astype(np.int32)


def _logistic_loss(w, x, y):
    logits = x @ w[:-1] + w[-1]
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(4)(nn.relu(nn.Dense(12)(x)))


MLP = _MLP()
PARAMS = MLP.init(jax.random.key(0), X)


def _mlp_loss(params, x, labels):
    logits = MLP.apply(params, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def test_logistic_regression_gradient(protocol):
    w = jnp.asarray(RNG.normal(size=7).astype(np.float32) * 0.3)
    assert_close(*run_both(jax.grad(_logistic_loss), w, X, BINARY, **protocol), atol=2e-3)


def test_mlp_value_and_grad_with_secret_labels(protocol):
    """The loss's gather at the secret labels and its transpose, a scatter-add at the same
    secret positions, both run as one-hot contractions."""
    assert_close(*run_both(jax.value_and_grad(_mlp_loss), PARAMS, X, LABELS, **protocol), atol=3e-3)


def test_vjp_of_a_shared_subexpression():
    """``x`` used twice: its cotangents meet in ``add_any``."""

    def f(x, ct):
        _, pullback = jax.vjp(lambda v: jnp.tanh(v) + v * v + 3 * v, x)
        return pullback(ct)[0]

    x, ct = jnp.linspace(-1, 1, 5), jnp.arange(5.0)
    assert_close(*run_both(f, x, ct, protocol="aby3", seed=1))


def test_gradient_through_lax_control_flow():
    """Transposed scans (an RNN), fori_loop, cond and remat inside jax.grad."""
    w = jnp.asarray(RNG.normal(size=(3, 3)).astype(np.float32) / 3)
    xs = jnp.asarray(RNG.normal(size=(4, 3)).astype(np.float32))

    def rnn_loss(w, xs):
        def step(h, x):
            h = jnp.tanh(h @ w + x)
            return h, h.sum()

        h, ys = jax.lax.scan(step, jnp.zeros(3), xs)
        looped = jax.lax.fori_loop(0, 3, lambda i, c: c * 0.5 + h.sum(), 0.0)
        branch = jax.lax.cond(True, lambda: (w * xs[:3]).sum(), lambda: w.sum())
        return (ys**2).sum() + looped + branch

    assert_close(
        *run_both(jax.grad(jax.checkpoint(rnn_loss)), w, xs, protocol="aby3", seed=7), atol=3e-3
    )


def _train_step(optimizer, loss):
    def step(params, state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value

    return step


def _steps(step, params, state, n, **options):
    run = secjax.secure_jit(step, **options) if options else jax.jit(step)
    for _ in range(n):
        params, state, value = run(params, state, X, LABELS)
    return params, state, value


@pytest.mark.parametrize("name", ["aby3", "semi2k"])
def test_sgd_momentum_steps_track_plaintext(name):
    optimizer = optax.sgd(0.1, momentum=0.9)
    step = _train_step(optimizer, _mlp_loss)
    state = optimizer.init(PARAMS)
    secure = _steps(step, PARAMS, state, 3, protocol=name, seed=3)
    plain = _steps(step, PARAMS, state, 3)
    assert_close(secure, plain, atol=1e-3)


def test_adam_step_tracks_plaintext():
    """Adam's sqrt, division and bias correction (a public base to the power of the secret
    step count) run through the existing rules. Its second moment (1 - b2) g^2 must be well
    above one unit at frac_bits (2^-18), hence a summed loss (larger gradients) and b2 0.99
    here; see the README's training section."""
    optimizer = optax.adam(1e-2, b2=0.99, eps_root=1e-4)

    def summed(p, x, y):
        return _mlp_loss(p, x, y) * x.shape[0]

    step = _train_step(optimizer, summed)
    state = optimizer.init(PARAMS)
    secure = _steps(step, PARAMS, state, 2, protocol="aby3", seed=4)
    plain = _steps(step, PARAMS, state, 2)
    # Adam moves each weight by about lr whatever its gradient's size, so a weight whose
    # gradient is near the ring's resolution may move differently: all within one lr,
    # nearly all within a fifth of it.
    assert_close(secure[0], plain[0], atol=1e-2, rtol=0)
    diffs = np.concatenate(
        [
            np.abs(np.ravel(a) - np.ravel(b))
            for a, b in zip(jax.tree.leaves(secure[0]), jax.tree.leaves(plain[0]))
        ]
    )
    assert np.mean(diffs < 2e-3) >= 0.95, np.sort(diffs)[-5:]
    np.testing.assert_allclose(secure[2], plain[2], rtol=2e-3)


def test_public_base_to_a_secret_integer_power():
    """optax's bias correction 1 - b**count: the integer count is lifted to frac_bits before
    its product with log b (it used to be rounded to an integer there)."""

    def f(count):
        return 1 - 0.999**count

    assert_close(
        *run_both(f, jnp.arange(1, 6, dtype=jnp.int32), protocol="plain"), atol=2e-5, rtol=1e-2
    )


@pytest.mark.parametrize("owner", ["secret", "private"])
def test_scatter_add_at_non_public_positions(owner):
    def f(base, idx, updates):
        return base.at[jnp.arange(4)[:, None], idx].add(updates)

    base = jnp.asarray(RNG.normal(size=(4, 5)).astype(np.float32))
    idx = jnp.asarray([[0, 2], [4, 4], [1, 3], [9, 0]], jnp.int32)  # (3, 0): dropped
    updates = jnp.asarray(RNG.normal(size=(4, 2)).astype(np.float32))
    idx_arg = secjax.private(idx, 1) if owner == "private" else idx
    secure = secjax.secure_jit(f, protocol="aby3", seed=5)(base, idx_arg, updates)
    assert_close(secure, jax.jit(f)(base, idx, updates))


def test_is_finite_is_public_true():
    def f(x):
        return jnp.where(jnp.isfinite(x), x, 0.0), jnp.isfinite(x)

    assert_close(*run_both(f, jnp.linspace(-3, 3, 4), protocol="aby3", seed=6))


def _load_example():
    import importlib.util
    import pathlib
    import sys

    path = pathlib.Path(__file__).parent.parent / "examples" / "train_mlp.py"
    spec = importlib.util.spec_from_file_location("train_mlp", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_mlp"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _run_example(**overrides):
    import argparse
    import io

    from rich.console import Console

    options = (
        dict(model="mlp", protocol="aby3", epochs=1, batch=16, hidden=16, lr=None, steps=2, seed=0)
        | overrides
    )
    return _load_example().run_training(argparse.Namespace(**options), Console(file=io.StringIO()))


@pytest.mark.parametrize("model", [pytest.param("mlp", marks=pytest.mark.slow), "logreg"])
def test_training_example_smoke(model):
    """A few steps of examples/train_mlp.py: the secret model tracks plaintext training.
    (The MLP's first run compiles about a minute of kernels on 2 cores: --runslow.)"""
    secure, plain, step_cost = _run_example(model=model)
    assert_close(secure[0], plain[0], atol=1e-3)
    np.testing.assert_allclose(secure[1], plain[1], atol=1e-3)
    assert abs(float(secure[2][0]) - float(plain[2][0])) <= 1  # test rows correct
    assert step_cost.rounds > 0 and max(step_cost.bytes_per_party) > 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "logreg"])
def test_training_example_reaches_plaintext_accuracy(model):
    """The example's default run: secure test accuracy within one point of plaintext."""
    secure, plain, _ = _run_example(model=model, epochs=5, batch=64, hidden=32, steps=None)
    n_test = {"mlp": 359, "logreg": 113}[model]
    assert abs(float(secure[2][-1]) - float(plain[2][-1])) / n_test <= 0.01
    assert float(plain[2][-1]) / n_test > 0.9
