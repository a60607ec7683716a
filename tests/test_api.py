"""The user's contract: decorator forms, pytrees, dtypes, caching, markers and cost."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close

import secjax


def test_bare_decorator_and_pytree_outputs():
    @secjax.secure_jit
    def f(tree, scale):
        return {"sum": tree["a"] + tree["b"], "pair": (tree["a"] * scale, jnp.int32(3))}

    tree = {"a": jnp.arange(3.0), "b": jnp.ones(3, jnp.float32)}
    out = f(tree, jnp.float32(2.0))
    assert f.config.protocol == "aby3" and f.config.parties == 3
    expected = jax.jit(f.fun)(tree, jnp.float32(2.0))
    assert_close(out, expected)


def test_options_and_config_forms():
    f = secjax.secure_jit(lambda x: x * 2, protocol="plain", frac_bits=12)
    assert f.config.frac_bits == 12 and f.config.parties == 1
    g = secjax.secure_jit(config=secjax.Config(protocol="plain", ring_bits=32, frac_bits=10))(
        lambda x: x * 2
    )
    np.testing.assert_allclose(g(jnp.array([1.25, -3.5])), [2.5, -7.0])
    with pytest.raises(ValueError, match="unknown protocol"):
        secjax.secure_jit(lambda x: x, protocol="nope")
    with pytest.raises(ValueError, match="ring_bits"):
        secjax.secure_jit(lambda x: x, protocol="plain", ring_bits=16)(jnp.ones(2))


def test_traced_once_per_signature():
    calls = []

    def f(x):
        calls.append(1)
        return x + 1

    g = secjax.secure_jit(f, protocol="plain")
    g(jnp.ones(3))
    g(jnp.zeros(3))
    assert len(calls) == 1
    g(jnp.ones(4))
    g(secjax.public(jnp.ones(3)))
    assert len(calls) == 3


def test_second_call_reuses_compiled_kernels():
    f = secjax.secure_jit(lambda x, y: (x @ y) * x.sum(), protocol="plain")
    x, y = jnp.ones((4, 4)), jnp.ones((4, 4))
    f(x, y)
    f(x + 1, y)
    assert f.last_stats.kernels_compiled == 0


def test_user_x64_setting_is_left_alone():
    before = jax.config.jax_enable_x64
    secjax.secure_jit(lambda x: x * 2, protocol="plain")(jnp.ones(2))
    assert jax.config.jax_enable_x64 == before
    assert jnp.ones(2).dtype == (jnp.float64 if before else jnp.float32)


def test_dtypes_preserved():
    f = secjax.secure_jit(lambda x, i, b: (x * 2, i + 1, ~b), protocol="plain")
    out = f(jnp.ones(2, jnp.bfloat16), jnp.arange(2, dtype=jnp.int8), jnp.array([True, False]))
    assert [o.dtype for o in out] == [jnp.bfloat16, jnp.int8, jnp.bool_]


def test_cost_needs_no_values():
    f = secjax.secure_jit(lambda w, x: x @ w, protocol="plain")
    report = f.cost(
        jax.ShapeDtypeStruct((4, 4), jnp.float32), jax.ShapeDtypeStruct((2, 4), jnp.float32)
    )
    assert report.bytes_per_party == [0]
    assert "total" in str(report)


def test_cost_of_private_placeholder_matches_private_value():
    """A private argument costed from its shape alone stays private (the owner one-hots its
    ids locally), exactly as when its value is given."""
    table = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    ids = np.array([[1, 2, 3]], np.int32)
    f = secjax.secure_jit(lambda t, i: jnp.take(t, i, axis=0), protocol="aby3")
    placeholder = f.cost(table, secjax.private(jax.ShapeDtypeStruct(ids.shape, ids.dtype), 1))
    concrete = f.cost(table, secjax.private(ids, 1))
    assert placeholder.bytes_per_party == concrete.bytes_per_party
    assert placeholder.rounds == concrete.rounds
    assert "eqz" not in placeholder.by_op()


def test_cost_without_input_sharing():
    """Leaving out the inputs' sharing removes exactly the owner's messages of the shares:
    aby3 sends one word per input element (the owner's to its predecessor)."""
    f = secjax.secure_jit(lambda w, x: x @ w, protocol="aby3")
    w, x = jax.ShapeDtypeStruct((4, 3), jnp.float32), jax.ShapeDtypeStruct((2, 4), jnp.float32)
    report = f.cost(w, x)
    online = report.without_input_sharing()
    shared = [a - b for a, b in zip(report.bytes_per_party, online.bytes_per_party)]
    assert shared == [8 * (12 + 8), 0, 0]  # both inputs belong to party 0 (input_party)
    assert report.rounds - online.rounds == 2
    assert "share" not in online.by_op()


@pytest.mark.parametrize("protocol", ["aby3", "semi2k"])
def test_ideal_emulation_same_answer_and_cost(protocol):
    def f(x, w):
        h = x @ w
        return jnp.max(h, axis=-1), h * h, h == 0

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 8)).astype(np.float32)
    w = (rng.normal(size=(8, 16)) / 3).astype(np.float32)
    real = secjax.secure_jit(f, protocol=protocol, seed=1)
    ideal = secjax.secure_jit(f, protocol=protocol, seed=1, emulation="ideal")
    assert_close(ideal(x, w), jax.jit(f)(x, w), atol=5e-3, rtol=1e-2)
    assert_close(ideal(x, w), real(x, w), atol=1e-4, rtol=1e-4)
    assert ideal.last_cost.bytes_per_party == real.last_cost.bytes_per_party
    assert ideal.last_cost.rounds == real.last_cost.rounds


def test_unknown_emulation_mode():
    with pytest.raises(ValueError, match="emulation mode 'fast'"):
        secjax.secure_jit(lambda x: x, emulation="fast")


def test_progress_bar_counts_every_equation(monkeypatch):
    from secjax import api
    from secjax.interpreter import count_equations

    phases = {}

    def phase(self, name, total):
        phases[name] = [0, total]
        return lambda: phases[name].__setitem__(0, phases[name][0] + 1)

    monkeypatch.setattr(api._Bar, "phase", phase)

    def f(x):
        return jax.lax.scan(lambda c, v: (c + v, c * 2), 0.0, x)

    x = jnp.ones(5)
    g = secjax.secure_jit(f, protocol="plain", progress=True, cache=False)
    assert_close(g(x), jax.jit(f)(x))
    assert count_equations(jax.make_jaxpr(f)(x).jaxpr) == 15  # 3 body equations x 5 steps
    assert phases["planning"] == phases["running"] == [15, 15]
    assert phases["compiling kernels"][0] == phases["compiling kernels"][1]


def test_unused_computation_costs_nothing():
    def used_only(x):
        return x * x

    def with_dead_code(x):
        _unused = jnp.exp(x).sum()  # noqa: F841  (a model's pooler when only hidden states are kept)
        return x * x

    x = jax.ShapeDtypeStruct((8,), jnp.float32)
    lean = secjax.secure_jit(used_only).cost(x)
    padded = secjax.secure_jit(with_dead_code).cost(x)
    assert padded.bytes_per_party == lean.bytes_per_party and padded.rounds == lean.rounds
    assert min(lean.bytes_per_party) > 0


def test_cost_by_scope_follows_flax_modules():
    import flax.linen as nn

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(4, name="second")(nn.Dense(4, name="first")(x) ** 2)

    x = jnp.ones((2, 4))
    params = Block().init(jax.random.key(0), x)
    report = secjax.secure_jit(Block().apply).cost(params, x)
    scopes = report.by_scope(2)
    assert {"Block/first", "Block/second"} <= set(scopes)
    assert sum(t.sent[0] for t in scopes.values()) == report.bytes_per_party[0]


def test_kernels_are_released_before_memory_mappings_run_out(monkeypatch):
    from secjax.runtime import kernels

    monkeypatch.setattr(kernels, "_DEFAULT", kernels.KernelCache(None))
    monkeypatch.setattr(kernels, "_CHECK_EVERY", 1)
    monkeypatch.setattr(kernels, "mappings_nearly_exhausted", lambda: True)
    f = secjax.secure_jit(lambda x: x * x + x, protocol="plain")
    for n in range(1, 4):
        assert_close(f(jnp.ones(n)), jnp.full(n, 2.0))
    assert len(kernels.default_cache()) <= 1
    monkeypatch.undo()
    assert not kernels.mappings_nearly_exhausted()
