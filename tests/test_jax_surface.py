"""secjax's rules name primitives of the installed JAX: a renamed or removed primitive would
otherwise leave a rule that can never run (and its primitive without a rule)."""

from __future__ import annotations

import flax.linen  # noqa: F401  (imports the JAX modules whose primitives models use)
import jax.numpy  # noqa: F401

from secjax.interpreter import RULES
from secjax.jax_internals import primitive_names


def test_every_rule_names_a_primitive_of_the_installed_jax():
    known = primitive_names()
    assert len(known) > 200
    assert sorted(set(RULES) - known) == []
