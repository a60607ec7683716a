"""Handles: secrets shared once and passed to later calls, outputs kept secret, reveal, and
the errors of a handle used under another configuration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close

import secjax
from secjax.values import Public


def _layer(w, x):
    return jnp.tanh(x @ w)


def _data():
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(6, 5)).astype(np.float32) / 2,
        rng.normal(size=(3, 6)).astype(np.float32),
    )


def _sharing_cost(x, protocol):
    """What sharing ``x`` alone costs (a call that only shares it and keeps it secret)."""
    return secjax.secure_jit(lambda a: a, secret_outputs=True, **protocol).cost(x)


def test_shared_once_used_twice_costs_no_sharing(protocol):
    w, x = _data()
    f = secjax.secure_jit(_layer, **protocol)
    expected = jax.jit(_layer)(w, x)
    assert_close(f(w, x), expected, atol=2e-3)
    fresh = f.last_cost

    weights = secjax.share(w, protocol=protocol["protocol"], parties=protocol["parties"])
    for x_now in (x, -x):
        assert_close(f(weights, x_now), jax.jit(_layer)(w, x_now), atol=2e-3)
        reused = f.last_cost
        # the same computing and revealing; sharing only x: w's sharing is gone, exactly
        for phase in ("computing", "revealing"):
            assert reused.phases()[phase].sent == fresh.phases()[phase].sent, phase
            assert reused.phases()[phase].rounds == fresh.phases()[phase].rounds, phase
        w_alone, x_alone = _sharing_cost(w, protocol), _sharing_cost(x, protocol)
        assert reused.phases()["sharing"].sent == x_alone.bytes_per_party
        assert [a - b for a, b in zip(fresh.bytes_per_party, reused.bytes_per_party)] == (
            w_alone.bytes_per_party
        )
        assert fresh.rounds - reused.rounds == w_alone.rounds
    if protocol["protocol"] == "aby3":  # the owner sends one 8-byte word per element
        assert w_alone.bytes_per_party == [8 * w.size, 0, 0] and w_alone.rounds == 1
        assert reused.phases()["sharing"].sent == [8 * x.size, 0, 0]


def test_a_function_shares_under_its_own_configuration():
    w, x = _data()
    f = secjax.secure_jit(_layer, protocol="aby3", input_party=2)
    weights = f.share(w)
    assert weights.domain.protocol == "aby3" and weights.domain.holders == (0, 1, 2)
    assert_close(f(weights, x), jax.jit(_layer)(w, x), atol=2e-3)
    assert f.last_cost.phases()["sharing"].sent == [0, 0, 8 * x.size]  # x, by party 2


def test_phases_add_up_to_the_total(protocol):
    w, x = _data()
    report = secjax.secure_jit(_layer, **protocol).cost(w, x)
    phases = report.phases()
    assert [sum(p.sent[i] for p in phases.values()) for i in range(protocol["parties"])] == (
        report.bytes_per_party
    )
    assert sum(p.rounds for p in phases.values()) == report.rounds
    if protocol["protocol"] == "aby3":  # revealing a 3 x 5 output to all: a word each
        assert phases["revealing"].sent == [8 * 15] * 3 and phases["revealing"].rounds == 1


def test_secret_outputs_chain_calls_without_revealing(protocol):
    w, x = _data()
    first = secjax.secure_jit(
        lambda w, x: (x @ w, jnp.sum(x)), secret_outputs=(True, False), **protocol
    )
    hidden, total = first(w, x)
    assert isinstance(hidden, secjax.Handle) and hidden.shape == (3, 5)
    assert hidden.dtype == np.float32
    np.testing.assert_allclose(total, np.sum(x), atol=1e-3)
    assert first.last_cost.phases()["revealing"].sent == _reveal_cost(np.sum(x), protocol)

    second = secjax.secure_jit(jnp.tanh, **protocol)
    assert_close(second(hidden), np.tanh(x @ w), atol=2e-3)
    assert second.last_cost.phases()["sharing"].sent == [0] * protocol["parties"]
    assert_close(secjax.reveal(hidden), x @ w, atol=1e-3)


def _reveal_cost(value, protocol):
    return secjax.secure_jit(lambda a: a, **protocol).cost(value).phases()["revealing"].sent


def test_outputs_computed_in_the_clear_stay_public(protocol):
    """An output kept secret that the parties computed from public values alone comes back
    marked public, so passing it back in keeps it public (a KV cache's write index)."""
    f = secjax.secure_jit(lambda i, x: (i + 1, x * 2), secret_outputs=True, **protocol)
    index, doubled = f(secjax.public(np.int32(3)), np.float32(1.5))
    assert isinstance(index, Public) and int(index.value) == 4
    assert index.value.dtype == np.int32  # its own dtype, whatever x64 does inside
    assert isinstance(doubled, secjax.Handle)
    again, quadrupled = f(index, doubled)
    assert int(secjax.reveal(again)) == 5
    assert f.last_cost.bytes_per_party == [0] * protocol["parties"]  # a local product by 2
    assert float(secjax.reveal(quadrupled)) == 6.0


def test_share_keeps_public_leaves_and_reveals_to_one_party():
    tree = {"w": np.arange(4, dtype=np.float32), "n": secjax.public(np.int32(7))}
    shared = secjax.share(tree, party=1, protocol="aby3")
    assert isinstance(shared["w"], secjax.Handle) and shared["n"].value == 7
    sharer = secjax.secure_jit(lambda t: t, secret_outputs=True, protocol="aby3", input_party=1)
    assert sharer.cost(tree["w"]).bytes_per_party == [0, 32, 0]  # the owner, party 1
    opened = secjax.reveal(shared, to=2)
    np.testing.assert_array_equal(opened["w"], tree["w"])
    assert opened["n"] == 7
    report = secjax.secure_jit(lambda a: a, protocol="aby3", output_party=2).cost(shared["w"])
    assert report.bytes_per_party == [0, 32, 0]  # party 2's missing share, from party 1


def test_abstract_handles_are_costed_like_real_ones():
    w, x = _data()
    f = secjax.secure_jit(_layer, protocol="aby3")
    real = f.cost(secjax.share(w, protocol="aby3"), x)
    placeholder = secjax.share(jax.ShapeDtypeStruct(w.shape, w.dtype), protocol="aby3")
    assert placeholder.abstract
    abstract = f.cost(placeholder, x)
    assert abstract.bytes_per_party == real.bytes_per_party and abstract.rounds == real.rounds
    assert abstract.phases()["sharing"].sent == [8 * x.size, 0, 0]
    with pytest.raises(secjax.SecjaxError, match="abstract handle"):
        f(placeholder, x)


def test_handles_of_another_configuration_are_refused():
    w, x = _data()
    weights = secjax.share(w, protocol="aby3")
    cases = [
        (dict(protocol="semi2k"), "protocol aby3, not semi2k"),
        (dict(protocol="aby3", ring_bits=32, frac_bits=12), "ring bits 64, not 32"),
        (dict(protocol="aby3", frac_bits=16), "frac bits 18, not 16"),
        (dict(protocol="aby3", emulation="ideal"), "layout shares, not values"),
    ]
    for options, difference in cases:
        f = secjax.secure_jit(_layer, **options)
        with pytest.raises(secjax.SecjaxError, match=f"argument args\\[0\\].*{difference}"):
            f(weights, x)
    # a cost report traces the real share layout, whatever the emulation of the handle
    ideal = secjax.share(w, protocol="aby3", emulation="ideal")
    assert (
        secjax.secure_jit(_layer, protocol="aby3").cost(ideal, x).bytes_per_party
        == secjax.secure_jit(_layer, protocol="aby3").cost(weights, x).bytes_per_party
    )
    with pytest.raises(secjax.SecjaxError, match="one domain"):
        secjax.reveal([weights, secjax.share(w, protocol="semi2k")])


def test_ideal_emulation_handles(protocol):
    """Under ideal emulation handles hold values; they chain and reveal as real shares do."""
    w, x = _data()
    options = dict(protocol, emulation="ideal")
    weights = secjax.share(
        w, protocol=protocol["protocol"], parties=protocol["parties"], emulation="ideal"
    )
    f = secjax.secure_jit(_layer, secret_outputs=True, **options)
    assert_close(secjax.reveal(f(weights, x)), jax.jit(_layer)(w, x), atol=2e-3)


def test_secret_outputs_must_fit_the_outputs():
    f = secjax.secure_jit(lambda x: (x, x), secret_outputs=(True, False, True), protocol="aby3")
    with pytest.raises(secjax.SecjaxError, match="not a prefix"):
        f(np.float32(1.0))


def test_a_runtime_that_names_no_party_set_refuses_handles():
    """A runtime keeps secrets between calls only if it names its party set (a party
    process opts in, see docs/design.md); otherwise secret outputs are a clear error."""
    from secjax.runtime.emulation import Emulator

    class Forgetful(Emulator):
        party_set = None

    f = secjax.secure_jit(lambda x: x * 2, secret_outputs=True, protocol="aby3")
    runtime = Forgetful(3, f.config.ring, seed=0)
    with pytest.raises(secjax.SecjaxError, match="Forgetful keeps no secret between calls"):
        f._execute((np.float32(1.0),), {}, abstract=False, runtime=runtime)
