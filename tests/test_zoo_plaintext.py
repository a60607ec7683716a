"""Every zoo model builds deterministically and runs under ``jax.jit`` with a finite output of
the expected shape (the plaintext baseline of ``tests/test_zoo.py``)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from zoo_models import BATCH, SEQ, ZOO, build, model_primitives

CASES = ZOO  # all of them: the plaintext forward is quick for every model


@pytest.mark.parametrize("name", CASES)
def test_plaintext_forward(name):
    model = build(name)
    out = np.asarray(jax.jit(model.fn)(model.params, **model.inputs))
    assert out.shape == model.out_shape
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert np.std(out) > 0, "a constant output would make the cosine test meaningless"
    if model.lm_head:
        assert out.shape[:2] == (BATCH, SEQ) and out.shape[2] >= 128
    elif "pixel_values" in model.inputs or name == "clip-text":
        assert out.shape == (BATCH, out.shape[-1])  # pooled output
    else:
        assert out.shape[:2] == (BATCH, SEQ)  # last_hidden_state


@pytest.mark.parametrize("name", CASES)
def test_jaxpr_has_core_primitives(name):
    """The zoo exercises what secjax must cover: matmuls, and (every model) exp in softmax."""
    prims = model_primitives(build(name))
    assert {"dot_general", "exp", "reduce_max", "div"} <= prims


def test_factories_are_deterministic():
    first = build.__wrapped__("gpt2")
    second = build.__wrapped__("gpt2")
    for a, b in zip(jax.tree.leaves(first.params), jax.tree.leaves(second.params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.inputs["input_ids"], second.inputs["input_ids"])
