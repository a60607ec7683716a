"""Compiled protocol kernels, owned by a runtime: an in-memory cache over the disk cache.

A *kernel* is one protocol step traced for fixed input shapes: the exchanges it records
(its exact cost), the shapes it returns, and, once compiled, its executable. A
:class:`KernelCache` keeps kernels in memory (least recently used dropped first) and, for
kernels whose key is stable across processes (:mod:`secjax.runtime.fingerprint`), on disk
(:mod:`secjax.runtime.disk_cache`), so a new process loads executables instead of tracing and
compiling them.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from typing import Any, Callable

import jax
from jax.experimental import serialize_executable

from secjax.runtime import disk_cache
from secjax.runtime.comm import Exchange

# XLA's CPU executables hold memory mappings that JAX's own caches keep alive (about 24 per
# kernel were seen), and Linux allows 65,530 mappings per process (vm.max_map_count): past
# that, compiling segfaults. Every CHECK_EVERY new kernels the mappings are counted, and near
# the limit every kernel is dropped and jax.clear_caches() releases the executables.
_CHECK_EVERY = 64
_MAPPINGS_HIGH_WATER = 0.6


# XLA's LLVM optimisations make protocol kernels slow to compile and fast to run (measured in
# benchmarks/RESULTS.md, "Compiling kernels"), so kernels over few elements compile at level
# 0, larger ones with XLA's defaults. Set per kernel: the user's own jax.jit code keeps XLA's
# defaults.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}
_OPTIMISE_FROM_ELEMENTS = 2**15


def compiler_options(avals) -> dict:
    """XLA options for a kernel over ``avals``: level 0 for small inputs, defaults else."""
    elements = sum(math.prod(a.shape) for a in avals)
    return {} if elements >= _OPTIMISE_FROM_ELEMENTS else _FAST_COMPILE


def mappings_nearly_exhausted() -> bool:
    """Whether this process uses most of the memory mappings Linux allows it."""
    try:
        with open("/proc/sys/vm/max_map_count") as limit, open("/proc/self/maps") as maps:
            return sum(1 for _ in maps) > _MAPPINGS_HIGH_WATER * int(limit.read())
    except OSError:  # not Linux: no such limit to watch
        return False


@dataclasses.dataclass
class Kernel:
    """A step traced for fixed shapes: its exchanges, output shapes and executable."""

    exchanges: tuple[Exchange, ...]
    out_info: Any
    traced: Any = None  # jax's traced stage, until compiled
    compiled: Callable | None = None
    compiler_options: dict = dataclasses.field(default_factory=dict)
    stable_key: str | None = None  # its name on disk, when it has one
    persistent: bool = False  # whether to write it to disk once compiled
    lock: threading.Lock = dataclasses.field(
        default_factory=threading.Lock, repr=False, compare=False
    )  # one compile at a time

    def compile(self) -> None:
        """Lower and compile the traced step (safe to call from worker threads)."""
        if self.compiled is None:
            self.compiled = self.traced.lower().compile(compiler_options=self.compiler_options)


@dataclasses.dataclass
class CacheStats:
    """What a runtime's kernel lookups did (reset per call by the emulator's owner)."""

    traced: int = 0  # steps traced (new shapes)
    compiled: int = 0  # executables compiled
    loaded: int = 0  # executables or costs read from disk


class KernelCache:
    """Kernels by key, in memory (at most ``capacity``) and on disk (``disk``, if any)."""

    def __init__(self, disk: disk_cache.DiskCache | None, capacity: int = 1024):
        self.disk = disk
        self.capacity = capacity
        self._kernels: collections.OrderedDict[tuple, Kernel] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._added = 0

    def __len__(self) -> int:
        return len(self._kernels)

    def get(
        self,
        key: tuple,
        stable_key: Callable[[], str | None],
        persistent: bool,
        stats: CacheStats,
        trace: Callable[[], Kernel],
    ) -> Kernel:
        """The kernel of ``key``: from memory, else from disk (under ``stable_key()``, its
        name there, or ``None`` for none), else ``trace()``'d."""
        with self._lock:
            kernel = self._kernels.get(key)
            if kernel is not None:
                self._kernels.move_to_end(key)
                return kernel
        persistent = persistent and self.disk is not None
        stable_key = stable_key() if persistent else None
        kernel = self._load(stable_key, stats) if persistent else None
        if kernel is None:
            kernel = trace()
            stats.traced += 1
            kernel.stable_key = stable_key
            kernel.persistent = persistent and stable_key is not None
            if kernel.persistent and kernel.traced is None:  # a cost trace: store it now
                self._store(kernel)
        self._insert(key, kernel)
        return kernel

    def finish(self, kernel: Kernel, stats: CacheStats) -> None:
        """Compile ``kernel`` if it is not, and write it to disk when it should be. Safe
        from any thread: a kernel another thread is compiling is waited for."""
        with kernel.lock:
            if kernel.compiled is not None:
                return
            kernel.compile()
            if kernel.persistent:
                self._store(kernel)
            kernel.traced = None  # the executable is all that is needed from now on
        with self._lock:
            stats.compiled += 1

    def remembered(self, key: str, compute: Callable[[], Any]):
        """``compute()``, kept on disk under ``key`` when the disk cache is on: for slow,
        deterministic set-up work of secjax's own (fitting the approximations' polynomials),
        which a new process then need not redo."""
        if self.disk is None:
            return compute()
        found = self.disk.load(_VALUE_PREFIX + key)
        if found is not None:
            return found
        value = compute()
        self.disk.store(_VALUE_PREFIX + key, value)
        return value

    def planned(self, program: str | None) -> bool:
        """Whether a process has planned the program named ``program`` and kept its kernels
        on disk (a first call may then skip planning: every kernel it needs loads)."""
        return (
            program is not None
            and self.disk is not None
            and self.disk.load(_PLAN_PREFIX + program) is not None
        )

    def mark_planned(self, program: str | None) -> None:
        """Record on disk that ``program``'s kernels were planned and kept."""
        if program is not None and self.disk is not None:
            self.disk.store(_PLAN_PREFIX + program, True)

    def clear(self) -> None:
        """Drop every kernel held in memory and JAX's caches that keep executables alive
        (the user's own ``jax.jit`` caches too); the disk cache is kept."""
        with self._lock:
            self._kernels.clear()
        jax.clear_caches()

    # -- internals ----------------------------------------------------------------------------
    def _insert(self, key: tuple, kernel: Kernel) -> None:
        with self._lock:
            self._added += 1
            check = self._added % _CHECK_EVERY == 0
        if check and mappings_nearly_exhausted():
            self.clear()
        with self._lock:
            self._kernels[key] = kernel
            while len(self._kernels) > self.capacity:
                self._kernels.popitem(last=False)

    def _load(self, stable_key: str | None, stats: CacheStats) -> Kernel | None:
        if stable_key is None or self.disk is None:
            return None
        entry = self.disk.load(stable_key)
        if entry is None:
            return None
        try:
            compiled = None
            if entry["executable"] is not None:
                payload, in_tree, out_tree = entry["executable"]
                compiled = serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
            kernel = Kernel(
                entry["exchanges"], entry["out_info"], compiled=compiled, stable_key=stable_key
            )
        except Exception as exc:  # noqa: BLE001 - a foreign entry must only cost a compile
            self.disk.discard(self.disk.entry_path(stable_key), f"cannot be loaded ({exc})")
            return None
        stats.loaded += 1
        return kernel

    def _store(self, kernel: Kernel) -> None:
        executable = None
        if kernel.compiled is not None:
            try:
                executable = serialize_executable.serialize(kernel.compiled)
            except Exception:  # noqa: BLE001 - not serializable here: kept in memory only
                return
        self.disk.store(
            kernel.stable_key,
            {"exchanges": kernel.exchanges, "out_info": kernel.out_info, "executable": executable},
        )


_PLAN_PREFIX = "planned program: "
_VALUE_PREFIX = "value: "
_DEFAULT: KernelCache | None = None


def default_cache() -> KernelCache:
    """The kernel cache this process's secure functions share (its disk part follows
    ``SECJAX_CACHE_DIR`` and ``SECJAX_CACHE`` as they were when it was first asked for)."""
    global _DEFAULT
    if _DEFAULT is None:
        disk = disk_cache.DiskCache(disk_cache.cache_root()) if disk_cache.cache_enabled() else None
        _DEFAULT = KernelCache(disk)
    return _DEFAULT
