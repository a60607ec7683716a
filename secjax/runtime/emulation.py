"""All parties in one process: shares carry a leading party axis, messages permute it.

Protocol steps run as small jit-compiled kernels (one jit of a whole model would take XLA on
CPU minutes to compile). Compiling them is most of a first call, so the emulator needs few:

- a step that treats every element alike (truncation, comparison, sharing, opening, an
  elementwise product or sum) runs on its elements flattened and cut into blocks of a few
  fixed sizes (:data:`BLOCK_SIZES`), the last block padded with zeros: one kernel per block
  size serves every layer and every shape. Its cost is traced at the real shape (a trace,
  no compile), so the report counts real elements only, exactly as a party process sends
  them;
- every other step (matrix products, reshapes) has a kernel per input shape;
- kernels live in a :class:`~secjax.runtime.kernels.KernelCache` that outlives the call and
  the process (on disk), and :meth:`Emulator.compile_pending` compiles the kernels a call
  needs, found by a planning pass, on worker threads while it runs.

Randomness here comes from XLA's RngBitGenerator (ThreeFry), which models the parties' PRGs
with the right distribution; it is a simulation device, not a cryptographic PRG, and the
network runtime does not use it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import math
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from secjax.ring import Ring
from secjax.runtime.base import Runtime
from secjax.runtime.comm import Comm, combine
from secjax.runtime.cost import CostLog
from secjax.runtime.fingerprint import fingerprint
from secjax.runtime.kernels import (
    CacheStats,
    Kernel,
    KernelCache,
    compiler_options,
    default_cache,
)


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
        key = jnp.stack(
            [
                self._seed_words[0] ^ self._counter,
                self._seed_words[1] ^ jnp.uint32(self._draws),
                jnp.uint32(0),
                jnp.uint32(0),
            ]
        )
        return jax.lax.rng_bit_generator(
            key, tuple(shape), dtype=dtype, algorithm=jax.lax.RandomAlgorithm.RNG_THREE_FRY
        )[1]

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

    def uniform(self, shape, dtype):
        """One uniform array without a party axis (the randomness of ideal steps)."""
        return self._uniform(shape, dtype)

    def random_pair(self, shape, dtype):
        with_next = self._uniform((self.n_parties, *shape), dtype)
        return with_next, jnp.roll(with_next, 1, axis=0)

    def dealer_random_shares(self, shape, dtype, *, xor=False):
        shares = self._uniform((self.n_parties, *shape), dtype)
        return combine(shares, xor), shares

    def deal_shares(self, value, *, xor=False):
        prg = self._uniform((self.n_parties - 1, *value.shape), value.dtype)
        correction = (value ^ combine(prg, True)) if xor else value - combine(prg, False)
        self._record((0,) * self.n_parties, dealer=self._payload(value[None]), offline=True)
        return jnp.concatenate([prg, correction[None]], axis=0)


# Elementwise steps run on blocks of these numbers of elements (the last is the block that
# larger arrays are cut into). On CPU a block of 2^16 elements runs an aby3 comparison in
# less time per element than one of 2^18 (it fits the caches) and small blocks cost little
# to pad; accelerators want larger blocks.
BLOCK_SIZES = {"cpu": (2**12, 2**16)}
ACCELERATOR_BLOCK_SIZES = (2**12, 2**16, 2**20)


def _aval_key(x) -> tuple:
    return (tuple(x.shape), np.dtype(x.dtype).str)


def _blocks(n: int, sizes: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """``(start, stop, block size)`` covering ``n`` elements: whole blocks of the largest
    size, then the rest in the smallest size that holds it."""
    largest = sizes[-1]
    pieces = [(lo, lo + largest, largest) for lo in range(0, n - n % largest, largest)]
    rest = n % largest
    if rest or not pieces:
        lo = n - rest
        pieces.append((lo, n, next(size for size in sizes if size >= rest)))
    return pieces


class Emulator(Runtime):
    """Runs protocol steps for all parties at once and accounts for what they would send.

    ``abstract=True`` traces steps without compiling or running them: the cost log fills in
    exactly as it would in a real run, and results are ``jax.ShapeDtypeStruct`` placeholders.
    With ``plan=True`` as well, the kernels a real run would need are traced too and kept in
    :attr:`pending` for :meth:`compile_pending`.
    ``kernels``: where compiled steps are kept (default: the process's shared cache);
    ``persistent``: whether they may be read from and written to its disk part.
    Every emulator holds all parties' shares in this process, so shares one emulator
    computed (handles) are valid in any other of the same protocol, parties and ring.
    """

    party_set = "emulator"

    def __init__(
        self,
        n_parties: int,
        ring: Ring,
        seed: int,
        *,
        abstract: bool = False,
        plan: bool = False,
        kernels: KernelCache | None = None,
        persistent: bool = True,
    ):
        self.n_parties = n_parties
        self.ring = ring
        self.abstract = abstract or plan
        self.plan = plan
        self.cost = CostLog(n_parties)
        self.kernels = kernels if kernels is not None else default_cache()
        self.persistent = persistent
        self.stats = CacheStats()
        self.compile_seconds = 0.0  # tracing, lowering, compiling and loading kernels
        self.pending: dict[int, Kernel] = {}
        platform = jax.default_backend()
        self.block_sizes = BLOCK_SIZES.get(platform, ACCELERATOR_BLOCK_SIZES)
        self._host_arrays = platform == "cpu"  # block on the host: no compile per shape
        self._timing = False
        self._seed_words = np.random.default_rng(seed).integers(0, 2**32, 2, dtype=np.uint32)
        self._calls = 0

    @property
    def kernels_compiled(self) -> int:
        return self.stats.compiled

    def holds(self, party: int) -> bool:
        """Whether this runtime holds party ``party``'s private data: all of it, here."""
        return True

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
        """See :meth:`Runtime.run`."""
        if on_host and self._host_arrays and cost_of is None:
            if self.abstract:
                return _host_shapes(
                    step, tuple(map(_aval_key, arrays)), tuple(sorted(static.items()))
                )
            return step(None, *map(np.asarray, arrays), **static)
        real_step, real_avals = cost_of if cost_of is not None else (step, arrays)
        if elementwise is None:
            kernel = self._kernel(
                step, arrays, static, None if cost_of is None else (real_step, real_avals)
            )
            self.cost.add(kernel.exchanges)
            return kernel.out_info if self.abstract else self._call(kernel, arrays)
        costed = self._kernel(real_step, real_avals, static, None, compiled=False)
        self.cost.add(costed.exchanges)
        if self.abstract and not self.plan and cost_of is None:
            return costed.out_info
        return self._run_blocks(step, arrays, static, tuple(elementwise), whole)

    # -- elementwise steps on blocks ----------------------------------------------------------
    def _run_blocks(self, step, arrays, static, shape, whole):
        """``step`` on blocks of the elements of ``shape``; the results as if run whole."""
        n = math.prod(shape)
        leading = [
            None if i in whole else _leading_axes(a.shape, shape) for i, a in enumerate(arrays)
        ]
        step, arrays, static = _shifts_at_run_time(step, arrays, static, self.ring)
        leading += [None] * (len(arrays) - len(leading))  # the amounts: passed whole
        pieces = _blocks(n, self.block_sizes)
        if self.abstract:  # planning: the kernels of every block size, and the results' shapes
            for size in sorted({size for _, _, size in pieces}):
                block = [
                    a if lead is None else jax.ShapeDtypeStruct((*lead, size), a.dtype)
                    for a, lead in zip(arrays, leading)
                ]
                out = self._kernel(step, block, static, None).out_info
            return jax.tree.map(
                lambda o: jax.ShapeDtypeStruct((*o.shape[:-1], *shape), o.dtype), out
            )
        xp = np if self._host_arrays else jnp
        flat = [
            a
            if lead is None
            else xp.broadcast_to(xp.asarray(a), (*lead, *shape)).reshape((*lead, n))
            for a, lead in zip(arrays, leading)
        ]
        outputs = []
        for lo, hi, size in pieces:
            block = [
                f if lead is None else _padded(xp, f[..., lo:hi], size)
                for f, lead in zip(flat, leading)
            ]
            out = self._call(self._kernel(step, block, static, None), block)
            outputs.append(jax.tree.map(lambda o, m=hi - lo: xp.asarray(o)[..., :m], out))

        def joined(*parts):
            whole_array = parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=-1)
            return whole_array.reshape((*whole_array.shape[:-1], *shape))

        return jax.tree.map(joined, *outputs)

    # -- kernels ------------------------------------------------------------------------------
    def _kernel(self, step, arrays, static, costed, *, compiled: bool = True) -> Kernel:
        """The kernel of ``step`` on ``arrays``' shapes (``compiled=False``: only its trace,
        for the cost of an elementwise step at its real shape)."""
        avals = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays)
        key = (
            step,
            costed and (costed[0], tuple(map(_aval_key, costed[1]))),
            compiled,
            self.n_parties,
            self.ring,
            tuple(sorted(static.items())),
            tuple(map(_aval_key, avals)),
        )
        with self._timed():
            kernel = self.kernels.get(
                key,
                lambda: fingerprint(key),
                self.persistent,
                self.stats,
                lambda: self._trace(step, avals, static, costed, compiled),
            )
        if compiled and kernel.compiled is None and self.plan:
            self.pending[id(kernel)] = kernel
        return kernel

    @contextlib.contextmanager
    def _timed(self):
        """Add the time inside to ``compile_seconds`` (once, however deeply nested)."""
        if self._timing:
            yield
            return
        self._timing = True
        started = time.perf_counter()
        try:
            yield
        finally:
            self._timing = False
            self.compile_seconds += time.perf_counter() - started

    def _trace(self, step, avals, static, costed, compiled) -> Kernel:
        comms: list[EmulatedComm] = []

        def kernel(seed_words, counter, *xs):
            comm = EmulatedComm(self.n_parties, self.ring, seed_words, counter)
            comms.append(comm)
            return step(comm, *xs, **static)

        traced = jax.jit(kernel).trace(
            jax.ShapeDtypeStruct(self._seed_words.shape, self._seed_words.dtype),
            jax.ShapeDtypeStruct((), np.uint32),
            *avals,
        )
        exchanges = tuple(comms[0].exchanges)
        if costed is not None:
            exchanges = self._kernel(costed[0], costed[1], static, None, compiled=False).exchanges
        return Kernel(
            exchanges,
            traced.out_info,
            traced if compiled else None,
            compiler_options=compiler_options(avals),
        )

    def _call(self, kernel: Kernel, arrays):
        if kernel.compiled is None:
            with self._timed():
                self.kernels.finish(kernel, self.stats)
        self._calls += 1
        return kernel.compiled(self._seed_words, np.uint32(self._calls), *arrays)

    def compile_pending(self, on_compiled=None) -> concurrent.futures.ThreadPoolExecutor:
        """Start compiling the kernels the planning pass found missing, in the order the
        program needs them, on one worker thread per CPU core; ``on_compiled()`` is called
        after each. Returns the pool (shut it down to wait for the workers). A run started
        meanwhile waits only for the kernel it needs next, or compiles it itself first."""
        pending = [k for k in self.pending.values() if k.compiled is None]
        self.pending.clear()
        pool = concurrent.futures.ThreadPoolExecutor(
            os.cpu_count() or 1, thread_name_prefix="secjax-compile"
        )

        def compile_one(kernel):
            self.kernels.finish(kernel, self.stats)
            if on_compiled is not None:
                on_compiled()

        for kernel in pending:
            pool.submit(compile_one, kernel)
        return pool


# Static arguments that an elementwise step also takes as a scalar array (see
# secjax.ring.shift_amount): every truncation then shares one kernel per block size,
# whatever its amount and offset (secjax.protocols.common).
_RUN_TIME_STATICS = ("bits", "offset")


@dataclasses.dataclass(frozen=True)
class _WithRunTimeArgs:
    """``step`` taking its static arguments ``names`` from its last array arguments."""

    step: Callable
    names: tuple[str, ...]

    def __call__(self, comm, *arrays, **static):
        split = len(arrays) - len(self.names)
        return self.step(comm, *arrays[:split], **static, **dict(zip(self.names, arrays[split:])))


def _shifts_at_run_time(step, arrays, static, ring):
    """``(step, arrays, static)`` with the integer :data:`_RUN_TIME_STATICS` passed as
    scalar arrays instead of compiled in."""
    names = tuple(n for n in _RUN_TIME_STATICS if type(static.get(n)) is int)
    if not names:
        return step, arrays, static
    values = [np.asarray(static[n], ring.dtype) for n in names]
    rest = {k: v for k, v in static.items() if k not in names}
    return _WithRunTimeArgs(step, names), (*arrays, *values), rest


@functools.lru_cache(maxsize=8192)
def _host_shapes(step, avals, static):
    """The result shapes of a host step on arrays of ``avals`` (traced once per shape)."""
    return jax.eval_shape(
        lambda *xs: step(None, *xs, **dict(static)),
        *[jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in avals],
    )


def _leading_axes(array_shape, shape) -> tuple[int, ...] | None:
    """The axes of an array before the logical ``shape`` (its trailing axes equal to
    ``shape``'s or of size 1, broadcast); ``None`` for an operand of another rank (a scalar
    broadcast to every element), which is passed as it is."""
    array_shape, shape = tuple(array_shape), tuple(shape)
    split = len(array_shape) - len(shape)
    if split < 0 or not all(a in (s, 1) for a, s in zip(array_shape[split:], shape)):
        return None
    return array_shape[:split]


def _padded(xp, block, size: int):
    """``block`` with zeros appended along its last axis up to ``size`` elements."""
    missing = size - block.shape[-1]
    if missing == 0:
        return block
    return xp.concatenate([block, xp.zeros((*block.shape[:-1], missing), block.dtype)], axis=-1)
