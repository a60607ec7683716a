"""Higher-order primitives: calls are entered, loops run with public control."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from helpers import assert_close, run_both

import secjax


@jax.custom_jvp
def _cube(x):
    return x * x * x


_cube.defjvp(lambda primals, tangents: (_cube(primals[0]), 3 * primals[0] ** 2 * tangents[0]))


@jax.custom_vjp
def _double(x):
    return 2.0 * x


_double.defvjp(lambda x: (2.0 * x, None), lambda _, g: (2.0 * g,))


def test_nested_jit_custom_jvp_custom_vjp_and_remat(protocol):
    @jax.jit
    def inner(x):
        return _cube(x) + _double(x)

    def f(x):
        return jax.checkpoint(lambda y: inner(y) * 0.5)(x)

    assert_close(*run_both(f, jnp.linspace(-2, 2, 7), **protocol))


def test_scan_with_secret_carry_and_xs(protocol):
    def f(w, xs):
        def step(h, x):
            h = h @ w + x
            return h, h.sum()

        return jax.lax.scan(step, jnp.zeros(3), xs)

    w = jax.random.normal(jax.random.key(0), (3, 3)) / 3
    xs = jax.random.normal(jax.random.key(1), (4, 3))
    assert_close(*run_both(f, w, xs, **protocol), atol=2e-3)

    def reverse(w, xs):
        return jax.lax.scan(lambda c, x: (c * 0.5 + x, c), jnp.ones(3), xs, reverse=True)

    assert_close(*run_both(reverse, w, xs, **protocol))


def test_fori_loop_with_public_bounds(protocol):
    def f(x):
        return jax.lax.fori_loop(0, 3, lambda i, c: c * 0.5 + i, x)

    assert_close(*run_both(f, jnp.arange(4.0), **protocol))


def test_while_loop_with_public_condition(protocol):
    def f(x):
        return jax.lax.while_loop(lambda c: c[0] < 5, lambda c: (c[0] + 1, c[1] * 1.5), (0, x))[1]

    assert_close(*run_both(f, jnp.arange(3.0), **protocol))


def test_switch_with_public_index(protocol):
    def f(i, x):
        return jax.lax.switch(i, [lambda v: v * 2.0, lambda v: v - 1.0, lambda v: -v], x)

    x = jnp.array([1.5, -2.0])
    g = secjax.secure_jit(f, **protocol)
    for i in (-1, 0, 1, 2, 5):
        assert_close(g(secjax.public(jnp.int32(i)), x), jax.jit(f)(i, x))


def test_cond_on_secret_predicate_selects_obliviously(protocol):
    def f(p, x):
        return jax.lax.cond(p, lambda v: (v * 2.0, v.sum()), lambda v: (v - 1.0, v[0]), x)

    x = jnp.array([1.5, -2.0])
    g = secjax.secure_jit(f, **protocol)
    for p in (True, False):
        assert_close(g(jnp.bool_(p), x), jax.jit(f)(p, x))
