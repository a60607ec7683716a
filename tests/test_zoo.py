"""The zoo under MPC: every tiny Hugging Face Flax model of ``tests/zoo_models.py`` run by
``secjax.secure_jit`` matches ``jax.jit`` — the worst row's cosine similarity is at least
0.999 and, for language-model heads, the next-token argmax agrees on at least 95% of the
positions that are not padding.

Everything is secret by default (weights, token ids, attention masks, pixels); a second
variant gives the token ids to party 1 as its private input. Runs under aby3 (skipped until
that protocol is registered); ``SECJAX_ZOO_PROTOCOL=plain pytest tests/test_zoo.py`` runs the
same checks under another protocol, e.g. to study fixed-point accuracy without sharing.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from zoo_models import (
    ARGMAX_THRESHOLD,
    COSINE_THRESHOLD,
    SLOW,
    ZOO,
    argmax_agreement,
    build,
    min_row_cosine,
)

import secjax
from secjax.protocols import PROTOCOLS

PROTOCOL = os.environ.get("SECJAX_ZOO_PROTOCOL", "aby3")

pytestmark = pytest.mark.skipif(
    PROTOCOL not in PROTOCOLS, reason=f"protocol {PROTOCOL!r} is not built yet"
)


def _cases(names):
    return [
        pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else [], id=name)
        for name in names
    ]


def check_against_plaintext(model, secure, plain):
    """The zoo's pass criteria, with messages that say by how much a model missed them."""
    secure, plain = np.asarray(secure), np.asarray(plain)
    assert secure.shape == plain.shape and secure.dtype == plain.dtype
    assert np.all(np.isfinite(secure)), "secure output has non-finite entries"
    cosine = min_row_cosine(secure, plain)
    assert cosine >= COSINE_THRESHOLD, f"{model.name}: min row cosine {cosine:.5f}"
    if model.lm_head:
        agreement = argmax_agreement(secure, plain, model.valid)
        assert agreement >= ARGMAX_THRESHOLD, (
            f"{model.name}: next-token argmax agrees on {agreement:.1%} of positions"
        )


def run_secure(model, inputs):
    f = secjax.secure_jit(model.fn, protocol=PROTOCOL, seed=0)
    return f(model.params, **inputs)


@pytest.mark.parametrize("name", _cases(ZOO))
def test_zoo_secret_inputs(name):
    """Weights and inputs secret: embedding lookups (and CLIP's pooled pick at the argmax of
    the ids) build their one-hot matrices by secret equality tests."""
    model = build(name)
    plain = jax.jit(model.fn)(model.params, **model.inputs)
    check_against_plaintext(model, run_secure(model, model.inputs), plain)


# CI runs the private-ids variant on BERT alone: the lookup path is the same for every model.
@pytest.mark.parametrize(
    "name", [n if n == "bert" else pytest.param(n, marks=pytest.mark.slow) for n in ZOO]
)
def test_zoo_private_token_ids(name):
    """Token ids private to party 1: its one-hot matrices are built locally and shared."""
    model = build(name)
    if "input_ids" not in model.inputs:
        pytest.skip("a vision model: no token ids")
    if secjax.Config(protocol=PROTOCOL).parties < 2:
        pytest.skip(f"{PROTOCOL} has no party 1")
    inputs = dict(model.inputs, input_ids=secjax.private(model.inputs["input_ids"], party=1))
    plain = jax.jit(model.fn)(model.params, **model.inputs)
    check_against_plaintext(model, run_secure(model, inputs), plain)
