"""A party's protocol step cut at its messages: compiled local pieces, host actions between.

In a party process every message and every draw of randomness happens on the host (sockets,
AES-CTR), while the arithmetic around them is XLA's. A step is traced once per input shapes
with each host action as one :data:`host_p` equation, and :class:`Plan` cuts the jaxpr there
into *segments*, the runs of ordinary equations between two host actions, each compiled on
its own. :meth:`Plan.run` then runs segments and host actions in program order.

Why not one kernel with callbacks into the process: an executable that calls back into Python
cannot be written to disk, so every party process would compile every step anew at start-up;
a segment is a plain XLA computation, kept in the disk cache like the emulator's kernels, and
two steps whose pieces are the same computation on the same shapes share one executable (a
segment is named by its jaxpr's text). Host actions run in the calling thread, in order.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Callable

import jax
import numpy as np
from jax.extend.core import (
    ClosedJaxpr,
    Jaxpr,
    Literal,
    Primitive,
    Var,
    jaxpr_as_fun,
    jaxprs_in_params,
)

from secjax.runtime.kernels import CacheStats, Kernel, KernelCache, compiler_options

host_p = Primitive("secjax_host")
host_p.multiple_results = True


@host_p.def_abstract_eval
def _host_abstract_eval(*avals, action, out_avals, draw):
    return out_avals


def host(action: Callable, out_shapes, *args, draw: bool = False) -> list:
    """``action(*numpy args)`` run on the host at this point of the step, in program order;
    it returns numpy arrays of ``out_shapes`` (``jax.ShapeDtypeStruct`` s).

    ``draw=True`` marks a draw of randomness (no arguments, no message): draws run before
    the step's other pieces, in their own order, so that they do not cut segments. Every
    node runs the same step code, so two nodes that share a stream draw from it in the same
    order either way."""
    if draw and args:
        raise ValueError("a draw takes no arguments")
    out_avals = tuple(jax.core.ShapedArray(tuple(s.shape), s.dtype) for s in out_shapes)
    return host_p.bind(*args, action=action, out_avals=out_avals, draw=draw)


@dataclasses.dataclass
class _Piece:
    """A segment (``kernel``) or a host action (``action``), with the variables it reads
    and those it defines that later pieces or the step's outputs need."""

    reads: list
    writes: list
    kernel: Kernel | None = None
    action: Callable | None = None
    out_avals: tuple = ()


@dataclasses.dataclass
class Plan:
    """A step traced for one set of input shapes: its exchanges (the cost it adds per call),
    its output shapes, and its pieces in program order."""

    exchanges: tuple
    out_info: Any
    jaxpr: Jaxpr
    consts: list
    pieces: list[_Piece]

    @classmethod
    def of(
        cls,
        closed: ClosedJaxpr,
        out_info,
        exchanges: tuple,
        kernels: KernelCache,
        stats: CacheStats,
    ) -> "Plan":
        """Cut ``closed`` at its host actions; each segment's kernel is looked up in
        ``kernels`` (memory, then disk) and traced when missing, not yet compiled."""
        jaxpr = closed.jaxpr
        draws = [e for e in jaxpr.eqns if e.primitive is host_p and e.params["draw"]]
        groups: list[list | Any] = list(draws)
        for eqn in jaxpr.eqns:
            if eqn.primitive is host_p:
                if not eqn.params["draw"]:
                    groups.append(eqn)
            else:
                _refuse_nested_host(eqn)
                if not groups or not isinstance(groups[-1], list):
                    groups.append([])
                groups[-1].append(eqn)
        needed = {v for v in jaxpr.outvars if isinstance(v, Var)}
        pieces = []
        for group in reversed(groups):
            eqns = group if isinstance(group, list) else [group]
            writes = _unique(v for e in eqns for v in e.outvars if v in needed)
            defined = {v for e in eqns for v in e.outvars}
            reads = _unique(
                v for e in eqns for v in e.invars if isinstance(v, Var) and v not in defined
            )
            if isinstance(group, list):
                piece = _Piece(reads, writes, kernel=_segment(eqns, reads, writes, kernels, stats))
            else:
                piece = _Piece(
                    list(group.invars),
                    list(group.outvars),
                    action=group.params["action"],
                    out_avals=group.params["out_avals"],
                )
            pieces.append(piece)
            needed |= set(reads)
        pieces.reverse()
        return cls(exchanges, out_info, jaxpr, list(closed.consts), pieces)

    def kernels(self) -> list[Kernel]:
        return [p.kernel for p in self.pieces if p.kernel is not None]

    def run(self, *arrays):
        """The step's outputs on ``arrays``: segments run as compiled, host actions get
        numpy arrays (which waits for the segments they read)."""
        env = dict(zip(self.jaxpr.constvars, self.consts))
        env.update(zip(self.jaxpr.invars, arrays))

        def read(v):
            return v.val if isinstance(v, Literal) else env[v]

        for piece in self.pieces:
            inputs = [read(v) for v in piece.reads]
            if piece.kernel is not None:
                outputs = piece.kernel.compiled(*inputs)
            else:
                outputs = piece.action(*map(np.asarray, inputs))
                outputs = [
                    _checked(np.asarray(o), a, piece.action)
                    for o, a in zip(outputs, piece.out_avals, strict=True)
                ]
            env.update(zip(piece.writes, outputs))
        flat = [read(v) for v in self.jaxpr.outvars]
        return jax.tree.unflatten(jax.tree.structure(self.out_info), flat)


def _segment(eqns, reads, writes, kernels: KernelCache, stats: CacheStats) -> Kernel:
    """The kernel of the equations ``eqns`` as a function of ``reads`` returning ``writes``."""
    effects = frozenset().union(*(e.effects for e in eqns))
    jaxpr = Jaxpr([], reads, writes, eqns, effects)
    avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype) for v in reads]
    options = compiler_options(avals)
    text = f"{jaxpr}\n{options}"
    stable = None if " at 0x" in text else hashlib.sha256(text.encode()).hexdigest()

    def trace() -> Kernel:
        traced = jax.jit(jaxpr_as_fun(ClosedJaxpr(jaxpr, []))).trace(*avals)
        return Kernel((), traced.out_info, traced, compiler_options=options)

    return kernels.get(
        ("party segment", text),
        lambda: stable and f"party segment {stable}",
        True,
        stats,
        trace,
    )


def _refuse_nested_host(eqn) -> None:
    """A host action inside a nested jaxpr (a jitted helper, a loop) cannot be cut out."""
    for inner in jaxprs_in_params(eqn.params):
        for inner_eqn in inner.eqns:
            if inner_eqn.primitive is host_p:
                raise NotImplementedError(
                    f"a protocol step sends or draws inside `{eqn.primitive}`; party "
                    "processes need every message at the step's top level"
                )
            _refuse_nested_host(inner_eqn)


def _unique(vs) -> list:
    return list(dict.fromkeys(vs))


def _checked(value: np.ndarray, aval, action) -> np.ndarray:
    if value.shape != tuple(aval.shape) or value.dtype != aval.dtype:
        raise TypeError(
            f"host action {action} returned {value.dtype}{list(value.shape)}, "
            f"expected {aval.dtype}{list(aval.shape)}"
        )
    return value
