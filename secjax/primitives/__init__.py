"""One rule per JAX primitive, looked up by the primitive's name.

A rule is called as ``rule(ctx, *values, **params)`` when at least one operand is not public
(all-public equations are computed in the clear by the interpreter). It returns one value, or
a list for primitives with several results. Rules never see which protocol runs them.
"""

from __future__ import annotations

from typing import Callable

RULES: dict[str, Callable] = {}


def register(*names: str):
    """Register the decorated function as the rule of each primitive in ``names``."""

    def wrap(rule):
        for name in names:
            if name in RULES:
                raise ValueError(f"two rules for primitive {name!r}")
            RULES[name] = rule
        return rule

    return wrap


def load_rules() -> dict[str, Callable]:
    """Import the rule modules (they register themselves) and return the registry."""
    from secjax.primitives import (  # noqa: F401
        arith,
        bitwise,
        compare,
        control,
        division,
        gradients,
        lookup,
        pooling,
        reductions,
        rounding,
        sorting,
        structural,
        transcendental,
        trigonometric,
    )

    return RULES
