"""Walks a jaxpr, computing each equation on public, private or secret values.

An equation whose operands are all public is computed in the clear, exactly as JAX would;
one whose operands are public or private to a single party is computed by that party in the
clear. Any other equation goes to its primitive's rule (``secjax.primitives``); a named
function with an MPC-friendly override (``secjax.primitives.patterns``) is replaced as a whole,
and a pattern the policy substitutes (``patterns.substitutions``) is computed from other inputs, the
equations that then no output needs being skipped. A primitive
without a rule is an error that names it and the user's source line: never a fallback to
plaintext.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from jax.extend.core import ClosedJaxpr, Literal, jaxprs_in_params

from secjax.primitives import load_rules, patterns
from secjax.primitives.context import RuleContext
from secjax.values import Private, Public, Secret, Value

RULES = load_rules()


# The "owner" of values every party holds (public ones).
EVERY_PARTY = -1


def _owner(values) -> int | None:
    """The single party that can compute on ``values`` in the clear (``EVERY_PARTY`` when
    all are public), or None."""
    owners = {v.owner for v in values if isinstance(v, Private)}
    if any(isinstance(v, Secret) for v in values) or len(owners) > 1:
        return None
    return owners.pop() if owners else EVERY_PARTY


def _bind_clear(eqn, values):
    """Run the equation in the clear on plain arrays."""
    out = eqn.primitive.bind(*[v.value for v in values], **eqn.params)
    return list(out) if eqn.primitive.multiple_results else [out]


class Interpreter:
    """Evaluates closed jaxprs securely under one protocol."""

    def __init__(
        self,
        protocol,
        *,
        overrides: bool = True,
        policy=None,
        on_equation: Callable[[], None] | None = None,
    ):
        self.protocol = protocol
        self.overrides = patterns.OVERRIDES if overrides else {}
        self.substitutions = patterns.substitutions if overrides else None
        self.ctx = RuleContext(protocol, self.eval_jaxpr, policy)
        self.on_equation = on_equation
        self._scopes = [""]  # name stacks of the equations being evaluated, outermost first

    def eval_jaxpr(self, closed: ClosedJaxpr, args: list[Value]) -> list[Value]:
        jaxpr = closed.jaxpr
        env: dict = {}

        def read(var):
            if isinstance(var, Literal):  # a Python scalar (True in `b & True`) gets its dtype
                return Public(np.asarray(var.val, var.aval.dtype))
            return env[var]

        for var, const in zip(jaxpr.constvars, closed.consts):
            env[var] = Public(const)
        for var, arg in zip(jaxpr.invars, args, strict=True):
            env[var] = arg
        subs = self.substitutions(jaxpr, self.ctx.policy) if self.substitutions else {}
        skipped = _unneeded(jaxpr, subs) if subs else frozenset()
        producers: dict = {}
        for i, eqn in enumerate(jaxpr.eqns):
            if i in skipped:
                self._advance(eqn)
                continue
            sub = subs.get(i)
            values = [read(v) for v in (sub.invars if sub else eqn.invars)]
            outs = self._eval_eqn(eqn, values, producers, sub)
            for var, out in zip(eqn.outvars, outs, strict=True):
                env[var] = out
                producers[var] = (eqn, values)
        return [read(v) for v in jaxpr.outvars]

    def _advance(self, eqn) -> None:
        if self.on_equation is not None and next(jaxprs_in_params(eqn.params), None) is None:
            self.on_equation()  # (jaxprs_in_params is a generator: always truthy itself)

    def _eval_eqn(
        self, eqn, values: list[Value], producers: dict, sub: patterns.Substitution | None = None
    ) -> list[Value]:
        self._advance(eqn)
        owner = _owner(values)
        if owner is not None:
            arrays = [v.value for v in values]
            outs = sub.clear(*arrays) if sub else _bind_clear(eqn, values)
            return [Public(o) if owner == EVERY_PARTY else Private(o, owner) for o in outs]
        ctx = self.ctx
        outer_producers, ctx.producers = ctx.producers, producers
        ctx.eqn_stack.append(eqn)
        try:
            if sub is not None:
                rule, params, label = sub.rule, {}, sub.label
            else:
                rule, params, label = self._rule_for(eqn), eqn.params, self._label(eqn)
            scope = self._scope(eqn)
            self._scopes.append(scope)
            with self.protocol.runtime.cost.label(label, scope):
                outs = rule(ctx, *values, **params)
            self._scopes.pop()
        finally:
            ctx.eqn_stack.pop()
            ctx.producers = outer_producers
        return list(outs) if eqn.primitive.multiple_results else [outs]

    def _rule_for(self, eqn):
        override = self.overrides.get(eqn.params.get("name")) if "jaxpr" in eqn.params else None
        if override is not None:
            return override
        rule = RULES.get(eqn.primitive.name)
        if rule is None:
            raise self.ctx.unsupported(
                "no secure rule for this primitive on non-public operands (see "
                "`secjax primitives` for the supported list)"
            )
        return rule

    def _scope(self, eqn) -> str:
        """The equation's full name stack: a sub-jaxpr's stacks are relative to its call."""
        inner = str(eqn.source_info.name_stack)
        outer = self._scopes[-1]
        return f"{outer}/{inner}" if outer and inner else outer or inner

    @staticmethod
    def _label(eqn) -> str:
        name = eqn.params.get("name")
        return (
            f"{eqn.primitive.name}:{name}"
            if name and "jaxpr" in eqn.params
            else (eqn.primitive.name)
        )


def _unneeded(jaxpr, subs: dict) -> frozenset:
    """Indices of the equations no output of ``jaxpr`` needs once the substituted equations
    read their substitutions' inputs instead of their own (effectful ones are kept)."""
    needed = {v for v in jaxpr.outvars if not isinstance(v, Literal)}
    unneeded = set()
    for i in reversed(range(len(jaxpr.eqns))):
        eqn = jaxpr.eqns[i]
        if not eqn.effects and not any(v in needed for v in eqn.outvars):
            unneeded.add(i)
            continue
        invars = subs[i].invars if i in subs else eqn.invars
        needed.update(v for v in invars if not isinstance(v, Literal))
    return frozenset(unneeded)


def count_equations(jaxpr) -> int:
    """Equations a secure evaluation of ``jaxpr`` visits, sub-jaxprs expanded (a scan's
    body once per step; a while loop's body once, its trip count being unknown)."""
    total = 0
    for eqn in jaxpr.eqns:
        subs = list(jaxprs_in_params(eqn.params))
        if not subs:
            total += 1
            continue
        repeat = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
        total += repeat * sum(count_equations(sub) for sub in subs)
    return total
