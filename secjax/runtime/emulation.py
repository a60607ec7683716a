"""All parties in one process: shares carry a leading party axis, messages permute it.

Protocol steps run as small jit-compiled kernels cached by (step, static arguments, input
shapes), so the repeated layers of a model reuse the same compiled code. One jit of a whole
model would take XLA on CPU minutes to compile; a few hundred small kernels take seconds.

Randomness here comes from ``jax.random`` (XLA's RngBitGenerator), which models the parties' PRGs with the
right distribution; it is a simulation device, not a cryptographic PRG, and the network
runtime does not use it.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from secjax.ring import Ring
from secjax.runtime.comm import Comm, Exchange
from secjax.runtime.cost import CostLog


class EmulatedComm(Comm):
    """Comm over arrays whose axis 0 indexes the parties."""

    def __init__(self, n_parties: int, ring: Ring, key: jax.Array):
        super().__init__(n_parties, ring)
        self._key = key
        self._draws = 0

    def _next_key(self) -> jax.Array:
        self._draws += 1
        return jax.random.fold_in(self._key, self._draws)

    def _uniform(self, shape, dtype) -> jax.Array:
        return jax.random.bits(self._next_key(), tuple(shape), dtype)

    def _party_shaped(self, like_ndim: int) -> tuple[int, ...]:
        return (self.n_parties,) + (1,) * (like_ndim - 1)

    def local_shape(self, x):
        return tuple(x.shape[1:])

    def party_index(self, like):
        return jnp.arange(self.n_parties, dtype=jnp.int32).reshape(self._party_shaped(like.ndim))

    def shift(self, x, offset=1):
        self._record((self._payload(x),) * self.n_parties)
        return jnp.roll(x, offset % self.n_parties, axis=0)

    def all_gather(self, x):
        self._record((self._payload(x) * (self.n_parties - 1),) * self.n_parties)
        return jnp.broadcast_to(x[None], (self.n_parties,) + x.shape)

    def send(self, x, src, dst):
        sent = [0] * self.n_parties
        sent[src] = self._payload(x)
        self._record(tuple(sent))
        received = jnp.zeros_like(x).at[dst].set(x[src])
        return received

    def random(self, shape, dtype):
        return self._uniform((self.n_parties, *shape), dtype)

    def random_pair(self, shape, dtype):
        with_next = self._uniform((self.n_parties, *shape), dtype)
        return with_next, jnp.roll(with_next, 1, axis=0)

    def dealer_random_shares(self, shape, dtype, *, xor=False):
        shares = self._uniform((self.n_parties, *shape), dtype)
        return _combine(shares, xor), shares

    def deal_shares(self, value, *, xor=False):
        prg = self._uniform((self.n_parties - 1, *value.shape), value.dtype)
        correction = (value ^ _combine(prg, True)) if xor else value - _combine(prg, False)
        self._record((0,) * self.n_parties, dealer=self._payload(value[None]), offline=True)
        return jnp.concatenate([prg, correction[None]], axis=0)


def _combine(shares, xor: bool):
    """The value that party-indexed ``shares`` share: their XOR or their sum."""
    if xor:
        return jax.lax.reduce(shares, np.zeros((), shares.dtype), jax.lax.bitwise_xor, (0,))
    return jnp.sum(shares, axis=0, dtype=shares.dtype)


@dataclasses.dataclass
class _Kernel:
    exchanges: tuple[Exchange, ...]
    out_info: object
    traced: object
    compiled: Callable | None = None


# Kernels of this process. XLA's CPU executables hold memory mappings that JAX's own caches
# keep alive (with eager ops and jitted user code, about 24 mappings per protocol kernel were
# seen), and Linux allows 65,530 mappings per process (vm.max_map_count): past that,
# compiling segfaults (seen in long test sessions). So every _CHECK_EVERY new kernels the
# mappings are counted, and near the limit every kernel is dropped and jax.clear_caches()
# releases the executables. A model's working set is a few hundred kernels; only processes
# that run many different programs get there.
_KERNELS: dict[tuple, _Kernel] = {}
_CHECK_EVERY = 64
_MAPPINGS_HIGH_WATER = 0.6


def _mappings_nearly_exhausted() -> bool:
    """Whether this process uses most of the memory mappings Linux allows it."""
    try:
        with open("/proc/sys/vm/max_map_count") as limit, open("/proc/self/maps") as maps:
            return sum(1 for _ in maps) > _MAPPINGS_HIGH_WATER * int(limit.read())
    except OSError:  # not Linux: no such limit to watch
        return False

# Protocol kernels are chains of integer elementwise ops and float64 GEMMs, which XLA's LLVM
# backend optimisations barely speed up but make slow to compile. Measured on 2 CPU cores, an
# aby3 msb over 128x384 elements: 8.1 s to compile by default, 1.6 s at level 0, with the
# warm run no slower (0.16 s against 0.24 s); a 128x384x1536 aby3 matmul likewise.
# Set per kernel, so the user's own jax.jit code keeps XLA's defaults.
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}

# XLA's RngBitGenerator: compiles several times faster on CPU than threefry's unrolled rounds
# (measured: 38 draws, 8.2 s against well under a second), with the same uniform output.
_PRNG_IMPL = "rbg"


def _aval_key(x) -> tuple:
    return (tuple(x.shape), np.dtype(x.dtype).str)


class Emulator:
    """Runs protocol steps for all parties at once and accounts for what they would send.

    ``abstract=True`` traces steps without compiling or running them: the cost log fills in
    exactly as it would in a real run, and results are ``jax.ShapeDtypeStruct`` placeholders.
    """

    def __init__(self, n_parties: int, ring: Ring, seed: int, *, abstract: bool = False):
        self.n_parties = n_parties
        self.ring = ring
        self.abstract = abstract
        self.cost = CostLog(n_parties)
        self.compile_seconds = 0.0  # tracing, lowering and compiling new kernels
        self.kernels_compiled = 0
        self._base_key = jax.random.key_data(jax.random.key(seed, impl=_PRNG_IMPL))
        self._calls = 0

    def holds(self, party: int) -> bool:
        """Whether this runtime holds party ``party``'s private data: all of it, here."""
        return True

    def run(self, step: Callable, *arrays, **static):
        """Run ``step(comm, *arrays, **static)`` for every party; returns its outputs.

        ``static`` values must be hashable: they are part of the compiled kernel's identity.
        """
        key = (step, self.n_parties, self.ring, tuple(sorted(static.items())),
               tuple(_aval_key(a) for a in arrays))
        kernel = _KERNELS.get(key)
        if kernel is None:
            start = time.perf_counter()
            if len(_KERNELS) % _CHECK_EVERY == 0 and _mappings_nearly_exhausted():
                _KERNELS.clear()
                jax.clear_caches()
            kernel = _KERNELS[key] = self._trace(step, arrays, static)
            self.compile_seconds += time.perf_counter() - start
        self.cost.add(kernel.exchanges)
        self._calls += 1
        if self.abstract:
            return kernel.out_info
        if kernel.compiled is None:
            start = time.perf_counter()
            kernel.compiled = kernel.traced.lower().compile(compiler_options=_COMPILER_OPTIONS)
            self.compile_seconds += time.perf_counter() - start
            self.kernels_compiled += 1
        return kernel.compiled(self._base_key, np.uint32(self._calls), *arrays)

    def _trace(self, step, arrays, static) -> _Kernel:
        comms: list[EmulatedComm] = []

        def kernel(base_key, counter, *xs):
            comm = EmulatedComm(self.n_parties, self.ring,
                                jax.random.fold_in(jax.random.wrap_key_data(base_key, impl=_PRNG_IMPL), counter))
            comms.append(comm)
            return step(comm, *xs, **static)

        avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays]
        traced = jax.jit(kernel).trace(
            jax.ShapeDtypeStruct(self._base_key.shape, self._base_key.dtype),
            jax.ShapeDtypeStruct((), np.uint32), *avals)
        return _Kernel(tuple(comms[0].exchanges), traced.out_info, traced)
