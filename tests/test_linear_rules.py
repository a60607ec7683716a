"""Every structural and linear rule against ``jax.jit``, under every protocol built so far."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close, run_both
from jax import lax

import secjax
from secjax.primitives.lookup import NARROW_MIN_POSITIONS


def _rand(seed, *shape, dtype=np.float32, scale=3.0):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-50, 50, size=shape).astype(dtype)
    return (rng.standard_normal(shape) * scale).astype(dtype)


# (id, function, arguments): each argument is secret.
CASES = [
    ("add", lambda x, y: x + y, (_rand(0, 3, 4), _rand(1, 3, 4))),
    ("add_scalar_literal", lambda x: x + 2.5, (_rand(0, 5),)),
    ("sub_neg", lambda x, y: -(x - y), (_rand(0, 2, 3), _rand(1, 2, 3))),
    ("mul", lambda x, y: x * y, (_rand(0, 4, 3), _rand(1, 4, 3))),
    ("mul_scalar_arrays", lambda x, y: x * y, (_rand(0), _rand(1))),
    ("mul_const_fraction", lambda x: x * 0.125 + x * 3.3, (_rand(0, 7),)),
    ("square", lambda x: jnp.square(x), (_rand(0, 6),)),
    ("integer_pow", lambda x: x**2 + x**3 + x**5, (_rand(0, 6, scale=1.2),)),
    ("matmul", lambda x, y: x @ y, (_rand(0, 5, 7), _rand(1, 7, 3))),
    ("matvec", lambda x, y: x @ y, (_rand(0, 5, 7), _rand(1, 7))),
    ("dot_scalar_inner_1", lambda x, y: x @ y, (_rand(0, 4, 1), _rand(1, 1, 4))),
    (
        "batched_dot_general",
        lambda x, y: jnp.einsum("bij,bjk->bik", x, y),
        (_rand(0, 2, 3, 4), _rand(1, 2, 4, 5)),
    ),
    (
        "dot_general_odd_dims",
        lambda x, y: lax.dot_general(x, y, (((0, 2), (2, 1)), ((1,), (0,)))),
        (_rand(0, 3, 2, 4), _rand(1, 2, 4, 3, 5)),
    ),
    (
        "conv2d",
        lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME"),
        (_rand(0, 2, 3, 6, 6, scale=1.0), _rand(1, 4, 3, 3, 3, scale=1.0)),
    ),
    (
        "conv1d_strided_dilated",
        lambda x, w: lax.conv_general_dilated(x, w, (2,), [(1, 1)], rhs_dilation=(2,)),
        (_rand(0, 1, 2, 9, scale=1.0), _rand(1, 3, 2, 2, scale=1.0)),
    ),
    ("reduce_sum", lambda x: (x.sum(), x.sum(0), x.sum((0, 2))), (_rand(0, 2, 3, 4),)),
    ("mean", lambda x: x.mean(-1), (_rand(0, 3, 8),)),
    ("cumsum", lambda x: (jnp.cumsum(x, 0), jnp.cumsum(x, 1)), (_rand(0, 3, 4),)),
    (
        "broadcast_reshape",
        lambda x: jnp.broadcast_to(x, (2, 3, 4)).reshape(6, 4),
        (_rand(0, 3, 1),),
    ),
    (
        "transpose_squeeze_expand",
        lambda x: jnp.expand_dims(jnp.squeeze(x.T, 1), 0),
        (_rand(0, 1, 1, 5),),
    ),
    ("slice_rev", lambda x: (x[1:, ::2], x[::-1], x[2]), (_rand(0, 4, 5),)),
    (
        "concatenate_pad_stack",
        lambda x, y: (
            jnp.pad(jnp.concatenate([x, y], 1), ((1, 0), (0, 2))),
            jnp.stack([x[:, :2], y], -1),
        ),
        (_rand(0, 2, 3), _rand(1, 2, 2)),
    ),
    ("pad_nonzero_value", lambda x: lax.pad(x, 1.5, [(1, 2, 1)]), (_rand(0, 4),)),
    ("split", lambda x: jnp.split(x, [1, 3], axis=1), (_rand(0, 2, 5),)),
    ("dynamic_slice", lambda x: lax.dynamic_slice(x, (1, 2), (2, 2)), (_rand(0, 4, 5),)),
    (
        "dynamic_update_slice",
        lambda x, u: lax.dynamic_update_slice(x, u, (1, 0)),
        (_rand(0, 4, 3), _rand(1, 2, 3)),
    ),
    ("gather_take", lambda x: jnp.take(x, jnp.array([2, 0, 2]), axis=1), (_rand(0, 3, 4),)),
    (
        "scatter_add",
        lambda x, u: x.at[jnp.array([0, 2, 0])].add(u),
        (_rand(0, 4, 2), _rand(1, 3, 2)),
    ),
    ("scatter_set", lambda x, u: x.at[1:3].set(u), (_rand(0, 4), _rand(1, 2))),
    (
        "select_public_predicate",
        lambda x, y: jnp.where(jnp.arange(6) % 2 == 0, x, y),
        (_rand(0, 6), _rand(1, 6)),
    ),
    (
        "select_secret_predicate",
        lambda p, x, y: jnp.where(p, x, y),
        (np.array([True, False, True, False]), _rand(0, 4), _rand(1, 4)),
    ),
    ("iota_plus_secret", lambda x: x + jnp.arange(5.0), (_rand(0, 5),)),
    (
        "int_arith",
        lambda a, b: (a + b, a * b, a - 3, (a * 2) @ b.T),
        (_rand(0, 2, 3, dtype=np.int32), _rand(1, 2, 3, dtype=np.int32)),
    ),
    (
        "int_to_float",
        lambda a, x: a.astype(jnp.float32) * x,
        (_rand(0, 5, dtype=np.int32), _rand(1, 5)),
    ),
    (
        "bool_to_float",
        lambda p, x: p.astype(jnp.float32) * x,
        (np.array([True, False, True]), _rand(1, 3)),
    ),
    ("float_to_bool", lambda x: x.astype(bool), (np.array([0.0, 1.5, -2.0, 0.0], np.float32),)),
    (
        "stop_gradient_copy",
        lambda x: lax.stop_gradient(x) + jnp.array(x, copy=True),
        (_rand(0, 3),),
    ),
    ("div_by_public", lambda x: x / 3.0 + x / jnp.array([1.0, 2.0, 4.0]), (_rand(0, 2, 3),)),
    ("scalars", lambda x, y: x * y + x, (np.float32(1.5), np.float32(-2.0))),
    ("size_one_axes", lambda x, y: (x * y).sum(1), (_rand(0, 1, 1, 1), _rand(1, 1, 1, 1))),
    ("empty", lambda x: x * 2.0, (np.zeros((0, 3), np.float32),)),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rule_matches_jax(case, protocol):
    _, f, args = case
    secure, plain = run_both(f, *args, **protocol)
    assert_close(secure, plain, atol=2e-3, rtol=1e-3)


PUBLIC_CASES = [
    ("public_weight_matmul", lambda w, x: x @ w, 0),
    ("public_first_matmul", lambda w, x: w.T @ x.T, 0),
    ("public_mul", lambda w, x: w[0] * x, 0),
]


@pytest.mark.parametrize("case", PUBLIC_CASES, ids=[c[0] for c in PUBLIC_CASES])
def test_public_operands(case, protocol):
    _, f, _ = case
    w, x = _rand(0, 4, 4), _rand(1, 3, 4)
    secure = secjax.secure_jit(f, **protocol)(secjax.public(w), x)
    assert_close(secure, jax.jit(f)(w, x))


def test_private_operand_is_used_by_owner_in_clear(protocol):
    def f(w, x):
        return jnp.tanh(w) @ x  # tanh runs in the clear at the owner: no rule needed

    w, x = _rand(0, 3, 3), _rand(1, 3, 2)
    owner = protocol["parties"] - 1
    secure = secjax.secure_jit(f, **protocol)(secjax.private(w, owner), x)
    assert_close(secure, jax.jit(f)(w, x))


def test_all_public_computation_is_exact(protocol):
    def f(x):
        return jnp.sin(x) * jnp.exp(x)

    x = _rand(0, 5)
    secure = secjax.secure_jit(f, **protocol)(secjax.public(x))
    np.testing.assert_array_equal(secure, jax.jit(f)(x))


def _embed(table, ids):
    return jnp.take(table, ids, axis=0).sum(-1) + table[ids[0]].sum()


def test_embedding_lookup_with_private_ids(protocol):
    table, ids = _rand(0, 10, 4), np.array([[3, 0, 9], [1, 1, 2]], np.int32)
    owner = protocol["parties"] - 1
    secure = secjax.secure_jit(_embed, **protocol)(table, secjax.private(ids, owner))
    assert_close(secure, jax.jit(_embed)(table, ids))


def test_embedding_lookup_with_public_table_and_private_ids_stays_local(protocol):
    table, ids = _rand(0, 10, 4), np.array([[3, 0, 9]], np.int32)
    f = secjax.secure_jit(_embed, **protocol)
    assert_close(f(secjax.public(table), secjax.private(ids, 0)), jax.jit(_embed)(table, ids))
    assert f.last_cost.bytes_per_party == [0] * protocol["parties"]


def test_embedding_lookup_with_secret_ids(protocol):
    table, ids = _rand(0, 10, 4), np.array([[3, 0, 9], [1, 1, 2]], np.int32)
    assert_close(secjax.secure_jit(_embed, **protocol)(table, ids), jax.jit(_embed)(table, ids))


def _lookup_filled(table, ids):
    return table.at[ids].get(mode="fill", fill_value=0).sum(-1)


def test_embedding_lookup_with_secret_ids_out_of_range_reads_zero(protocol):
    """Secret ids past the table (beyond the equality tests' 16 bits too, where a narrower
    test would alias them onto a row) read a zero row in fill mode, as jax.jit's do."""
    table = _rand(0, 10, 4)
    ids = np.array([[3, 10, -1, 2**16 + 3], [-(2**16) + 9, 2**31 - 1, 9, 0]], np.int32)
    f = secjax.secure_jit(_lookup_filled, **protocol)
    assert_close(f(table, ids), jax.jit(_lookup_filled)(table, ids))


def _take(table, ids):
    return jnp.take(table, ids, axis=0)


# A table just past the size from which lookups compute their one-hot product in 32 bits.
LARGE = NARROW_MIN_POSITIONS + 10
LARGE_IDS = np.array([[0, LARGE - 1, 4095, 4096, 17], [3, 3, LARGE - 2, 1, 2048]], np.int32)


@pytest.mark.parametrize("kind", ["secret", "private"])
def test_lookup_in_a_large_table_computes_in_the_narrow_ring(protocol, kind):
    """The one-hot product of a large table runs in the 32-bit ring and is widened exactly:
    the result matches jax.jit's, and the widening's sign tests add rounds (with more than
    one party) that Config(narrow_lookups=False) does without."""
    if kind == "private" and protocol["parties"] < 2:
        pytest.skip("one party: private and public coincide")
    table = _rand(3, LARGE, 6, scale=50.0)
    ids = secjax.private(LARGE_IDS, 1) if kind == "private" else LARGE_IDS
    expected = jax.jit(_take)(table, LARGE_IDS)
    rounds = {}
    for narrow in (True, False):
        f = secjax.secure_jit(_take, **protocol, narrow_lookups=narrow, emulation="ideal")
        assert_close(f(secjax.private(table, 0), ids), expected)
        rounds[narrow] = f.last_cost.rounds
    assert rounds[True] > rounds[False] or protocol["parties"] == 1
    # ids past the table read a zero row, as jax.jit's do in fill mode
    outside = np.array([[LARGE, -1, 2**16 + 3, 7]], np.int32)
    filled = secjax.secure_jit(_lookup_filled, **protocol, emulation="ideal")
    outside_ids = secjax.private(outside, 1) if kind == "private" else outside
    assert_close(
        filled(secjax.private(table, 0), outside_ids), jax.jit(_lookup_filled)(table, outside)
    )


def test_a_table_entry_past_the_narrow_ring_is_an_error_that_names_the_fix():
    """An entry of 9000 at 18 fractional bits is past 2^31 ring units: the guard stops the
    lookup and names Config(narrow_lookups=False); in count mode the result shows the real
    protocols' wrap (9000 - 2^14: the 32-bit ring at 18 fractional bits); with
    narrow_lookups=False it is right."""
    table = _rand(3, LARGE, 6)
    table[LARGE - 1, 2] = 9000.0
    args = (secjax.private(table, 0), secjax.private(LARGE_IDS, 1))
    f = secjax.secure_jit(_take, protocol="aby3", emulation="ideal")
    with pytest.raises(secjax.RangeError, match=r"gather.*32-bit ring.*narrow_lookups=False"):
        f(*args)
    counted = secjax.secure_jit(_take, protocol="aby3", emulation="ideal", range_guard="count")
    assert float(counted(*args)[0, 1, 2]) == 9000.0 - 2.0**14
    assert [site.label for site in counted.last_stats.out_of_range] == ["gather"]
    wide = secjax.secure_jit(_take, protocol="aby3", emulation="ideal", narrow_lookups=False)
    assert_close(wide(*args), jax.jit(_take)(table, LARGE_IDS))


def _picks(h, pos, rows, cols, along):
    """Gathers that pick whole slices at non-public positions: a 2-D position (CLIP's pooled
    output ``h[arange(batch), ids.argmax(-1)]``), a 2-D pick in fill mode with components out
    of range, a clipped take with out-of-range ids, and take_along_axis (gather batching
    dimensions)."""
    return (
        h[jnp.arange(h.shape[0]), pos],
        h.at[rows, cols].get(mode="fill", fill_value=0),
        jnp.take(h, cols, axis=1, mode="clip"),
        jnp.take_along_axis(h, along, axis=1),
    )


_PICK_ARGS = (
    _rand(0, 3, 5, 4),
    np.array([4, 0, 2], np.int32),
    np.array([0, 2, 1], np.int32),
    np.array([4, 5, -1], np.int32),
    np.array([[[1, 1, 4, 0]], [[0, 2, 2, 3]], [[3, 3, 0, 4]]], np.int32),
)


@pytest.mark.parametrize("kind", ["secret", "private"])
def test_gather_picks_at_non_public_positions(protocol, kind, request):
    if kind == "private" and protocol["parties"] < 2:
        pytest.skip("one party: private and public coincide")
    # secret positions compile an equality circuit per shape (~30 s a protocol): CI checks
    # them under plain and aby3, the other protocols with --runslow
    if (
        kind == "secret"
        and protocol["protocol"] not in ("plain", "aby3")
        and not request.config.getoption("--runslow")
    ):
        pytest.skip("slow: run with --runslow")
    h, *positions = _PICK_ARGS
    if kind == "private":
        positions = [secjax.private(p, protocol["parties"] - 1) for p in positions]
    secure = secjax.secure_jit(_picks, **protocol)(h, *positions)
    assert_close(secure, jax.jit(_picks)(*_PICK_ARGS))


def test_gather_window_at_secret_position_is_refused():
    def window(x, i):
        dn = lax.GatherDimensionNumbers(
            offset_dims=(1,), collapsed_slice_dims=(), start_index_map=(0,)
        )
        return lax.gather(x, i[:, None], dn, slice_sizes=(2,))

    with pytest.raises(
        secjax.UnsupportedError,
        match=r"`gather`.*window of 2 along operand "
        r"dimension 0",
    ):
        secjax.secure_jit(window, protocol="plain")(jnp.ones(5), jnp.array([1, 3]))
