"""What protocols run on: the :class:`Runtime` interface of the emulator and of a party
process."""

from __future__ import annotations

import abc
from typing import Callable

from secjax.ring import Ring
from secjax.runtime.cost import CostLog
from secjax.runtime.kernels import CacheStats, KernelCache


class Runtime(abc.ABC):
    """Runs protocol steps, accounts for their messages and owns their compiled kernels.

    ``cost`` collects the exchanges of every step run; ``kernels`` holds the compiled steps
    (shared between runtimes that run alike); ``stats`` counts what this runtime traced,
    compiled and loaded, and ``compile_seconds`` the time it spent on that.
    """

    n_parties: int
    ring: Ring
    abstract: bool
    cost: CostLog
    kernels: KernelCache
    stats: CacheStats
    compile_seconds: float
    # Which set of processes holds the shares this runtime computes on, for handles that
    # outlive a call (secjax.handles): equal names, interchangeable shares. None: this
    # runtime keeps no secret between calls.
    party_set: str | None = None

    @abc.abstractmethod
    def holds(self, party: int) -> bool:
        """Whether this runtime holds party ``party``'s private data."""

    @abc.abstractmethod
    def run(
        self,
        step: Callable,
        *arrays,
        cost_of: tuple | None = None,
        elementwise: tuple[int, ...] | None = None,
        whole: tuple[int, ...] = (),
        on_host: bool = False,
        **static,
    ):
        """Run ``step(comm, *arrays, **static)``; returns its outputs.

        ``static`` values must be hashable: they are part of the compiled kernel's identity.
        ``cost_of``: ``(real_step, avals)``, the step whose messages are recorded instead of
        ``step``'s (an ideal step: :mod:`secjax.protocols.ideal`).
        ``elementwise``: a trailing shape ``S`` whose elements the step treats alike: every
        array (except those at the positions ``whole``, and scalars, passed as they are) is
        ``(*leading axes, *S)``, and so is every result. A runtime may then run the step on
        any grouping of those elements (the emulator runs it on padded blocks of a few fixed
        sizes, so one kernel serves every shape); the cost recorded is always that of the
        arrays as given.
        ``on_host``: the step sends nothing and works on numpy arrays as on JAX arrays (a
        change of layout, a sum over axes), so a runtime may run it on the host directly.
        """
