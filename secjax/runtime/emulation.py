"""All parties in one process: shares carry a leading party axis, messages permute it.

Protocol steps run as small jit-compiled kernels cached by (step, static arguments, input
shapes), so the repeated layers of a model reuse the same compiled code. One jit of a whole
model would take XLA on CPU minutes to compile; a few hundred small kernels take seconds.

Randomness here comes from XLA's RngBitGenerator (ThreeFry), which models the parties' PRGs
with the right distribution; it is a simulation device, not a cryptographic PRG, and the
network runtime does not use it.
"""
from __future__ import annotations

import dataclasses
import math
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

    def __init__(self, n_parties: int, ring: Ring, seed_words: jax.Array, counter: jax.Array):
        super().__init__(n_parties, ring)
        self._seed_words = seed_words
        self._counter = counter
        self._draws = 0

    def _uniform(self, shape, dtype) -> jax.Array:
        """A fresh uniform array: each draw of each kernel call gets its own ThreeFry key,
        (seed_0 ^ call counter, seed_1 ^ draw number), so no two draws share a stream."""
        self._draws += 1
        key = jnp.stack([self._seed_words[0] ^ self._counter,
                         self._seed_words[1] ^ jnp.uint32(self._draws),
                         jnp.uint32(0), jnp.uint32(0)])
        return jax.lax.rng_bit_generator(key, tuple(shape), dtype=dtype,
                                         algorithm=jax.lax.RandomAlgorithm.RNG_THREE_FRY)[1]

    def _party_shaped(self, like_ndim: int) -> tuple[int, ...]:
        return (self.n_parties,) + (1,) * (like_ndim - 1)

    def local_shape(self, x):
        return tuple(x.shape[1:])

    def party_index(self, like):
        return jnp.arange(self.n_parties, dtype=jnp.int32).reshape(self._party_shaped(like.ndim))

    def total(self, x):
        return jnp.sum(x, axis=0, dtype=x.dtype)

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

    def uniform(self, shape, dtype):
        """One uniform array without a party axis (the randomness of ideal steps)."""
        return self._uniform(shape, dtype)

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

# XLA's LLVM backend optimisations make protocol kernels slow to compile and fast to run.
# Measured on 2 loaded CPU cores, aby3 msb over
# 128x384 elements: 5.4 s to compile at the default level and 38 ms to run, 2.0 s and 195 ms
# at level 0; over 128x1536: 6.1 s / 221 ms against 1.9 s / 745 ms; an aby3 truncation of
# 128x1536: 1.3 s / 84 ms against 0.6 s / 248 ms. So kernels over small arrays (where run
# time is negligible) compile at level 0, and larger ones with XLA's defaults. Set per
# kernel: the user's own jax.jit code keeps XLA's defaults.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}
_OPTIMISE_FROM_ELEMENTS = 2**15


def release_kernels() -> None:
    """Drop every compiled protocol kernel of this process and JAX's caches that keep their
    executables alive (this also empties the caches of the user's own ``jax.jit``
    functions). Later calls compile again. For long-lived processes that run many
    different programs."""
    _KERNELS.clear()
    jax.clear_caches()


def _compiler_options(arrays) -> dict:
    """XLA options for a kernel over ``arrays``: level 0 for small inputs, defaults else."""
    elements = sum(math.prod(a.shape) for a in arrays)
    return {} if elements >= _OPTIMISE_FROM_ELEMENTS else _FAST_COMPILE

# XLA's RngBitGenerator with ThreeFry, called directly: no key-derivation hashing in the
# kernels (jax.random's fold_in adds a ThreeFry loop per draw), and on 2 CPU cores ThreeFry
# draws 590k uint64 words in 3 ms (RngBitGenerator's default, Philox: 11 ms; narrow uint8 or
# uint32 draws by the default at optimisation level 0: 0.4-0.5 s).


def _aval_key(x) -> tuple:
    return (tuple(x.shape), np.dtype(x.dtype).str)


class Emulator:
    """Runs protocol steps for all parties at once and accounts for what they would send.

    ``abstract=True`` traces steps without compiling or running them: the cost log fills in
    exactly as it would in a real run, and results are ``jax.ShapeDtypeStruct`` placeholders.
    Steps of :class:`secjax.protocols.ideal.Ideal` come with ``cost_of``: the real step whose
    messages they stand for, traced (never run) for the cost log.
    """

    def __init__(self, n_parties: int, ring: Ring, seed: int, *, abstract: bool = False):
        self.n_parties = n_parties
        self.ring = ring
        self.abstract = abstract
        self.cost = CostLog(n_parties)
        self.compile_seconds = 0.0  # tracing, lowering and compiling new kernels
        self.kernels_compiled = 0
        self._seed_words = np.random.default_rng(seed).integers(0, 2**32, 2, dtype=np.uint32)
        self._calls = 0

    def holds(self, party: int) -> bool:
        """Whether this runtime holds party ``party``'s private data: all of it, here."""
        return True

    def run(self, step: Callable, *arrays, cost_of: tuple | None = None, **static):
        """Run ``step(comm, *arrays, **static)`` for every party; returns its outputs.

        ``static`` values must be hashable: they are part of the compiled kernel's identity.
        ``cost_of``: ``(real_step, avals)``, whose messages are recorded instead of
        ``step``'s (an ideal step: see :mod:`secjax.protocols.ideal`).
        """
        costed = None if cost_of is None else (cost_of[0], tuple(map(_aval_key, cost_of[1])))
        key = (step, costed, self.n_parties, self.ring, tuple(sorted(static.items())),
               tuple(_aval_key(a) for a in arrays))
        kernel = _KERNELS.get(key)
        if kernel is None:
            start = time.perf_counter()
            if len(_KERNELS) % _CHECK_EVERY == 0 and _mappings_nearly_exhausted():
                release_kernels()
            kernel = self._trace(step, arrays, static)
            if cost_of is not None:
                kernel.exchanges = self._trace(cost_of[0], cost_of[1], static).exchanges
            _KERNELS[key] = kernel
            self.compile_seconds += time.perf_counter() - start
        self.cost.add(kernel.exchanges)
        self._calls += 1
        if self.abstract:
            return kernel.out_info
        if kernel.compiled is None:
            start = time.perf_counter()
            kernel.compiled = kernel.traced.lower().compile(
                compiler_options=_compiler_options(arrays))
            self.compile_seconds += time.perf_counter() - start
            self.kernels_compiled += 1
        return kernel.compiled(self._seed_words, np.uint32(self._calls), *arrays)

    def _trace(self, step, arrays, static) -> _Kernel:
        comms: list[EmulatedComm] = []

        def kernel(seed_words, counter, *xs):
            comm = EmulatedComm(self.n_parties, self.ring, seed_words, counter)
            comms.append(comm)
            return step(comm, *xs, **static)

        avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays]
        traced = jax.jit(kernel).trace(
            jax.ShapeDtypeStruct(self._seed_words.shape, self._seed_words.dtype),
            jax.ShapeDtypeStruct((), np.uint32), *avals)
        return _Kernel(tuple(comms[0].exchanges), traced.out_info, traced)
