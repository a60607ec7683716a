"""The user's entry points: ``secure_jit``, ``public``, ``private``, ``Config``, and
``share`` / ``reveal`` for secrets that outlive a call (:mod:`secjax.handles`)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import os
import sys
import time
import warnings
from typing import Any, Callable

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr

from secjax import ring as ring_ops
from secjax.errors import EncodingError, RangeWarning, SecjaxError
from secjax.handles import Domain, Handle
from secjax.interpreter import Interpreter, count_equations
from secjax.jax_internals import drop_dead_code
from secjax.primitives.policy import Policy
from secjax.protocols import PROTOCOLS
from secjax.protocols.ideal import Clear, Ideal
from secjax.protocols.ranges import GUARD_MODES, RangeMonitor, warn_if_narrow
from secjax.ranges import RangeReport
from secjax.ring import Ring
from secjax.runtime.cost import REVEALING, SHARING, CostReport
from secjax.runtime.emulation import Emulator
from secjax.runtime.fingerprint import fingerprint
from secjax.values import (
    Private,
    Public,
    Secret,
    argument_name,
    dtype_of,
    encodable,
    is_marker,
    scale_of,
)

DEFAULT_PARTIES = {"plain": 1, "semi2k": 2, "aby3": 3}
PROGRESS_MIN_EQUATIONS = 300


EMULATION_MODES = ("protocol", "ideal")


@dataclasses.dataclass(frozen=True)
class Config:
    """How a secure function runs.

    protocol: ``"aby3"`` (3 parties, replicated sharing), ``"semi2k"`` (additive sharing with
      a dealer) or ``"plain"`` (fixed-point emulation without sharing, for accuracy studies).
    parties: number of computing parties (default: what the protocol needs).
    ring_bits, frac_bits: the ring Z_2^ring_bits and fixed-point fractional bits.
    input_party: the party that provides arguments not marked ``public`` or ``private``.
    output_party: the party the outputs are revealed to (default ``None``: every party).
    seed: seed of the emulated parties' randomness (default: fresh from the OS).
    overrides: replace named functions (gelu, silu, softmax...) by MPC-friendly rules.
    policy: the approximations of nonlinear functions (``secjax.nn.Policy``; default
      ``secjax.nn.DEFAULT_POLICY``): method, degree, iterations and ranges per function.
    progress: show a progress bar over the program's equations (default: on a terminal,
      for programs of more than ``PROGRESS_MIN_EQUATIONS`` equations).
    cache: keep compiled protocol kernels on disk between processes (default on; the
      directory is ``SECJAX_CACHE_DIR``, default ``~/.cache/secjax``; ``SECJAX_CACHE=0`` turns
      it off for every function; ``secjax cache`` shows its size and clears it).
    emulation: how the in-process emulator runs interactive steps (products, truncations,
      comparisons): ``"protocol"`` (default) runs every party's real computation;
      ``"ideal"`` holds secrets as their values and computes each step's result directly,
      with the real step's output distribution and the same exact cost report, at about the
      speed of ``plain`` (``secjax.protocols.ideal``). Party processes on a network always
      run the real protocol.
    range_guard: what the emulator does when a value reaches a truncation or a product past
      the range where the protocols compute it correctly (``secjax.protocols.ranges``):
      ``"raise"`` (default) a ``secjax.RangeError`` naming the equation, its source line,
      the magnitude and the bound; ``"count"`` runs on as the protocol would (wrong results
      included) and lists the sites in ``last_stats.out_of_range``; ``"off"`` checks nothing.
      Party processes cannot see values and never check.
    safe_truncation: truncations correct on the whole ring (one extra msb each) instead of
      the probabilistic ones, correct below 2^(ring_bits - 2): ``True`` everywhere, or a
      tuple of model scopes (name-stack paths such as ``"encoder/layer/5/output"``) so that
      only the layers that need it pay for it (``f.ranges(*args)`` says which).
    narrow_lookups: a gather at secret or private positions from a table of at least
      ``secjax.primitives.lookup.NARROW_MIN_POSITIONS`` rows (an embedding) computes its
      one-hot product in a 32-bit ring and widens the result exactly: about five times less
      local work, for entries below 2^(31 - frac_bits) in magnitude (8192 at 18 fractional
      bits; the range guard checks it). ``False`` keeps the product in the full ring.
    """

    protocol: str = "aby3"
    parties: int | None = None
    ring_bits: int = 64
    frac_bits: int = 18
    input_party: int = 0
    output_party: int | None = None
    seed: int | None = None
    overrides: bool = True
    policy: Policy | None = None
    progress: bool | None = None
    emulation: str = "protocol"
    cache: bool = True
    range_guard: str = "raise"
    safe_truncation: bool | tuple[str, ...] = False
    narrow_lookups: bool = True

    def __post_init__(self):
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"unknown protocol {self.protocol!r}; choose one of {sorted(PROTOCOLS)}"
            )
        if self.emulation not in EMULATION_MODES:
            raise ValueError(
                f"unknown emulation mode {self.emulation!r}; choose one of {list(EMULATION_MODES)}"
            )
        if self.parties is None:
            object.__setattr__(self, "parties", DEFAULT_PARTIES[self.protocol])
        if self.range_guard not in GUARD_MODES:
            raise ValueError(f"range_guard={self.range_guard!r}; choose one of {GUARD_MODES}")
        if not isinstance(self.safe_truncation, bool):
            scopes = (
                (self.safe_truncation,)
                if isinstance(self.safe_truncation, str)
                else (tuple(self.safe_truncation))
            )
            if not all(isinstance(scope, str) for scope in scopes):
                raise TypeError(
                    "safe_truncation takes True, False or model scopes (strings), "
                    f"got {self.safe_truncation!r}"
                )
            object.__setattr__(self, "safe_truncation", scopes)
        warn_if_narrow(self.ring)
        if not 0 <= self.input_party < self.parties:
            raise ValueError(
                f"input_party={self.input_party} is not one of the {self.parties} parties"
            )
        if self.output_party is not None and not 0 <= self.output_party < self.parties:
            raise ValueError(
                f"output_party={self.output_party} is not one of the {self.parties} parties"
            )

    @property
    def ring(self) -> Ring:
        return Ring(self.ring_bits, self.frac_bits)


def public(tree):
    """Mark every array in ``tree`` as known to all parties (computed on in the clear)."""
    return jax.tree.map(lambda x: Public(x), tree)


def private(tree, party: int):
    """Mark every array in ``tree`` as known to ``party`` alone (it computes on it locally
    in the clear; it is shared the first time it meets another party's data)."""
    return jax.tree.map(lambda x: Private(x, party), tree)


@dataclasses.dataclass
class RunStats:
    """Where the time of the last call went, in seconds, and what its kernels cost.

    trace: tracing ``f`` to a jaxpr; plan: the pass that finds the kernels a first call needs
    (without tracing them); compile: tracing and loading protocol kernels, and waiting for
    their compiling (which worker threads do while the call runs); run: the rest.
    kernels_compiled: executables compiled; kernels_loaded: kernels read from the disk
    cache instead. planned: whether the call ran the planning pass (a first call does,
    unless a process already planned the same program and kept its kernels on disk).
    """

    trace: float = 0.0
    plan: float = 0.0
    compile: float = 0.0
    run: float = 0.0
    kernels_compiled: int = 0
    kernels_loaded: int = 0
    planned: bool = False
    out_of_range: tuple = ()


@dataclasses.dataclass(frozen=True)
class Traced:
    """A secure function traced for one input signature: the closed jaxpr (dead code
    removed), the output tree, and each flat input's :class:`InputKind`."""

    jaxpr: Any
    out_tree: Any
    kinds: tuple


class SecureFunction:
    """``f`` compiled for secure execution; call it like ``f``. Traced once per input
    signature (structure, shapes, dtypes, and which inputs are public, private or handles).

    ``secret_outputs``: which outputs stay secret, as a prefix of the output pytree of
    booleans (``True``: all; ``(False, True)``: the second of two outputs). A secret output
    comes back as a :class:`~secjax.handles.Handle` (or, when the parties computed it from
    public values alone, as a :func:`public`-marked value), which later calls take as an
    argument without sharing it again and :func:`reveal` opens.
    """

    def __init__(self, fun: Callable, config: Config, secret_outputs: Any = False):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.config = config
        self.secret_outputs = secret_outputs
        self.last_stats = RunStats()
        self._traces: dict = {}
        self._planned: set = set()

    def __call__(self, *args, **kwargs):
        return self._execute(args, kwargs, abstract=False)

    def cost(self, *args, **kwargs) -> CostReport:
        """Bytes and rounds per party, per primitive and per protocol op, without running;
        :meth:`CostReport.phases` splits them into sharing, computing and revealing.

        Secret arguments may be ``jax.ShapeDtypeStruct`` or handles (abstract ones too);
        public ones must be concrete.
        """
        return self._execute(args, kwargs, abstract=True)

    def share(self, tree, party: int | None = None):
        """``tree``'s arrays shared once by ``party`` (default: ``input_party``) under this
        function's configuration: handles to pass to it, or any function of the same
        protocol, parties and ring, in place of the arrays (see :func:`share`)."""
        party = self.config.input_party if party is None else party
        return share(tree, party, config=self.config)

    def ranges(self, *args, search: bool = True, **kwargs) -> RangeReport:
        """How close every truncation, product and comparison comes to its bound, computed
        in the clear (:mod:`secjax.ranges`): per model scope, the first site past its bound
        with its source line, and (``search``) the largest ``frac_bits`` that fits every
        site, found by running again at the settings the headroom suggests."""
        report = self._range_report(args, kwargs)
        if search:
            report.largest_frac_bits = self._largest_fitting_frac_bits(report, args, kwargs)
        return report

    def _range_report(self, args, kwargs) -> RangeReport:
        monitor = self._execute(args, kwargs, abstract=False, clear=True)
        return RangeReport(
            list(monitor.sites.values()),
            self.config.ring,
            title=f"{self.__name__}: ranges under {self.config.protocol} "
            f"(frac_bits={self.config.frac_bits})",
        )

    def _largest_fitting_frac_bits(self, report: RangeReport, args, kwargs) -> int | None:
        """Products at twice the fractional bits lose two bits of headroom per bit: start
        from half the least headroom, then step until the run agrees."""
        ring = self.config.ring
        tight = report.tightest
        frac = ring.frac_bits + (0 if tight is None else math.floor(tight.headroom / 2))
        frac = max(0, min(frac, ring.bits // 2 - 4))
        fits: dict[int, bool] = {ring.frac_bits: report.fits}
        for _ in range(4):
            if frac not in fits:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RangeWarning)
                    other = SecureFunction(
                        self.fun, dataclasses.replace(self.config, frac_bits=frac)
                    )
                fits[frac] = other._range_report(args, kwargs).fits
            if (
                fits[frac]
                and fits.get(frac + 1) is False
                or fits[frac]
                and (frac == ring.bits // 2 - 4)
            ):
                return frac
            frac = frac + 1 if fits[frac] else frac - 1
            if frac < 0:
                return None
        return max((f for f, ok in fits.items() if ok), default=None)

    # -- tracing -----------------------------------------------------------------------------
    def trace(self, args, kwargs=None) -> tuple[Traced, list, list]:
        """The traced program for ``(args, kwargs)`` (cached per signature), the flat input
        leaves (markers kept) and their argument names (``args[0]['dense']['kernel']``)."""
        kwargs = dict(kwargs or {})
        with_paths, in_tree = jax.tree_util.tree_flatten_with_path(
            (args, kwargs), is_leaf=is_marker
        )
        paths = [argument_name(path) for path, _ in with_paths]
        leaves = [leaf for _, leaf in with_paths]
        kinds, avals = [], []
        for leaf in leaves:
            kind, raw = _classify(leaf)
            aval = jax.ShapeDtypeStruct(np.shape(raw), dtype_of(raw))
            kinds.append(kind)
            avals.append(aval)
        key = (in_tree, tuple(kinds), tuple((a.shape, a.dtype) for a in avals))
        traced = self._traces.get(key)
        if traced is None:
            out_tree = []

            def flat_fun(*flat):
                a, k = jax.tree.unflatten(in_tree, flat)
                out_leaves, tree = jax.tree.flatten(self.fun(*a, **k))
                out_tree.append(tree)
                return out_leaves

            closed = _without_dead_code(jax.make_jaxpr(flat_fun)(*avals))
            traced = self._traces[key] = Traced(closed, out_tree[0], tuple(kinds))
        return traced, leaves, paths

    # -- running -----------------------------------------------------------------------------
    def run_on(self, runtime, args, kwargs=None, *, given=None, reveal: bool = True):
        """Evaluate on ``runtime``, one party's runtime of a cluster
        (:class:`secjax.runtime.party.NetworkRuntime`): inputs the party does not hold are
        ``jax.ShapeDtypeStruct`` placeholders; outputs are ``None`` unless it is the output
        party. ``given`` maps flat input positions to values made beforehand (secrets shared
        once, then used by many calls) that replace those inputs. ``reveal=False`` returns
        the flat list of outputs as :class:`~secjax.values.Secret` values, opened to no one."""
        return self._execute(
            tuple(args),
            dict(kwargs or {}),
            abstract=False,
            runtime=runtime,
            given=given,
            reveal=reveal,
        )

    def _execute(self, args, kwargs, *, abstract: bool, clear: bool = False, **options):
        """The call's outputs; with ``abstract`` its cost report; with ``clear`` its range
        monitor (``options``: ``runtime``, ``given``, ``reveal``; see :meth:`_evaluate`)."""
        outputs, report, monitor = self._evaluate(
            args, kwargs, abstract=abstract, clear=clear, **options
        )
        return monitor if clear else report if abstract else outputs

    def _evaluate(
        self,
        args,
        kwargs,
        *,
        abstract: bool,
        runtime=None,
        clear: bool = False,
        given=None,
        reveal: bool = True,
    ):
        """Evaluate securely on ``runtime`` (default: an :class:`Emulator`); returns the
        outputs, the cost report and the range monitor (or ``None``). A network runtime
        (:mod:`secjax.network`) runs one party: inputs it does not hold are
        ``jax.ShapeDtypeStruct`` placeholders, and revealed outputs are ``None`` unless it is
        the output party (the whole result is ``None`` when no output stays secret).
        ``abstract``: outputs are ``jax.ShapeDtypeStruct`` and abstract handles. An emulated
        first call first plans: it runs the program abstractly to find the kernels it needs,
        and compiles the missing ones on every core while it runs (the run waits only for
        the kernel it needs next). ``clear``: run the protocol's functionality with exact
        truncations and record every bounded step's magnitudes in the monitor
        (:class:`~secjax.protocols.ranges.RangeMonitor`). ``given`` and ``reveal``: see
        :meth:`run_on`."""
        start = time.perf_counter()
        traced, leaves, paths = self.trace(args, kwargs)
        traced_at = time.perf_counter()
        config = self.config
        seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(4), "little")
        emulated = runtime is None
        guard = "record" if clear else config.range_guard
        if guard == "off" or abstract or not emulated:  # party processes cannot see values
            guard = None
        planned_key = (id(traced), clear)
        with jax.enable_x64(True), self._progress(traced.jaxpr.jaxpr, abstract) as progress:
            planner, compiling, program = None, None, None
            if emulated:
                runtime = self._emulator(seed, abstract=abstract)
            if emulated and not abstract and planned_key not in self._planned:
                program = self._program_key(traced, leaves, clear)
                if not runtime.kernels.planned(program):
                    planner, compiling = self._plan(traced, leaves, paths, seed, progress, clear)
            planned_at = time.perf_counter()
            advance = progress.phase(
                "costing" if abstract else "running", count_equations(traced.jaxpr.jaxpr)
            )
            try:
                interpreter, outs = self._interpret(
                    runtime,
                    traced,
                    leaves,
                    paths,
                    abstract,
                    ideal=emulated and not abstract,
                    on_equation=advance,
                    guard=guard,
                    clear=clear,
                    given=given,
                )
            finally:
                if compiling is not None:
                    compiling.shutdown(wait=True, cancel_futures=True)
            if not reveal:  # a served query's outputs: secret, opened to no one here
                return [interpreter.ctx.secret(out) for out in outs], None, None
            kept = self._kept_outputs(traced.out_tree)
            results = [
                self._keep(interpreter, out, var.aval, abstract)
                if keep
                else self._output(interpreter, out, var.aval, abstract)
                for out, var, keep in zip(outs, traced.jaxpr.jaxpr.outvars, kept)
            ]
            report = runtime.cost.report(title=f"{self.__name__} under {config.protocol}")
            if abstract:
                return jax.tree.unflatten(traced.out_tree, results), report, None
            jax.block_until_ready(
                [
                    r.shares if isinstance(r, Handle) else r.value if isinstance(r, Public) else r
                    for r in results
                ]
            )
            receives = config.output_party is None or runtime.holds(config.output_party)
            if emulated and planned_key not in self._planned:
                self._planned.add(planned_key)
                if planner is not None:
                    runtime.kernels.mark_planned(program)
        end = time.perf_counter()
        monitor = interpreter.protocol.monitor
        runtimes = [r for r in (planner, runtime) if r is not None]
        compile_seconds = sum(r.compile_seconds for r in runtimes)
        plan_seconds = planned_at - traced_at - (planner.compile_seconds if planner else 0.0)
        self.last_stats = RunStats(
            trace=traced_at - start,
            plan=plan_seconds,
            compile=compile_seconds,
            run=end - traced_at - plan_seconds - compile_seconds,
            kernels_compiled=sum(r.stats.compiled for r in runtimes),
            kernels_loaded=sum(r.stats.loaded for r in runtimes),
            planned=planner is not None,
            out_of_range=tuple(monitor.out_of_range) if monitor is not None else (),
        )
        if clear:
            return None, report, monitor
        self.last_cost = report
        if not receives and not any(kept):
            return None, report, monitor
        results = [
            r if keep else np.asarray(r) if receives else None for r, keep in zip(results, kept)
        ]
        return jax.tree.unflatten(traced.out_tree, results), report, monitor

    def _kept_outputs(self, out_tree) -> list[bool]:
        """For each output leaf, whether it stays secret (``secret_outputs``, a prefix of
        the output pytree, broadcast to its leaves)."""
        outputs = jax.tree.unflatten(out_tree, range(out_tree.num_leaves))
        try:
            flags = jax.tree.map(
                lambda flag, sub: jax.tree.map(lambda _: bool(flag), sub),
                self.secret_outputs,
                outputs,
            )
        except ValueError as exc:
            raise SecjaxError(
                f"secret_outputs={self.secret_outputs!r} is not a prefix of "
                f"{self.__name__}'s outputs {out_tree}: {exc}"
            ) from None
        return jax.tree.leaves(flags)

    def _program_key(self, traced, leaves, clear: bool = False) -> str | None:
        """A name for this program on disk: its jaxpr and constants, its public inputs'
        values (they choose encodings, and so kernels), the kinds and shapes of the others,
        and the configuration (and whether it runs ``clear``); ``None`` when the
        configuration has no stable name or the disk cache is off."""
        config_name = fingerprint(dataclasses.astuple(self.config))
        if config_name is None or not self.config.cache:
            return None
        digest = hashlib.sha256(str(traced.jaxpr.jaxpr).encode())
        publics = [leaf.value for leaf, kind in zip(leaves, traced.kinds) if kind.name == "public"]
        for value in [*traced.jaxpr.consts, *publics]:
            array = np.asarray(value)
            digest.update(repr((array.dtype.str, array.shape)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(repr((traced.kinds, clear)).encode())
        return f"{digest.hexdigest()}:{config_name}"

    def _emulator(self, seed: int, **modes) -> Emulator:
        config = self.config
        return Emulator(config.parties, config.ring, seed, persistent=config.cache, **modes)

    def _interpret(
        self,
        runtime,
        traced,
        leaves,
        paths,
        abstract: bool,
        *,
        ideal: bool,
        on_equation=None,
        guard: str | None = None,
        clear: bool = False,
        given=None,
    ):
        """Run the jaxpr's equations on ``runtime``; returns the interpreter and the outputs.
        ``guard``: the range guard's mode (None: no guard); ``clear``: the functionality
        with exact truncations (:class:`~secjax.protocols.ideal.Clear`); ``given``: values
        for some flat inputs, by position, used as they are."""
        config = self.config
        protocol = PROTOCOLS[config.protocol](config.ring, config.parties, runtime)
        if clear:
            protocol = Clear(protocol)
        elif ideal and config.emulation == "ideal":
            protocol = Ideal(protocol)
        protocol.safe_truncation = config.safe_truncation
        protocol.narrow_lookups = config.narrow_lookups
        interpreter = Interpreter(
            protocol, overrides=config.overrides, policy=config.policy, on_equation=on_equation
        )
        if guard is not None:
            protocol.monitor = RangeMonitor(config.ring, guard, interpreter.ctx.site)
        given = given or {}
        with runtime.cost.label(SHARING):
            inputs = [
                given[i]
                if i in given
                else self._input(interpreter, kind, leaf, var.aval, name, abstract)
                for i, (kind, leaf, var, name) in enumerate(
                    zip(traced.kinds, leaves, traced.jaxpr.jaxpr.invars, paths)
                )
            ]
        return interpreter, interpreter.eval_jaxpr(traced.jaxpr, inputs)

    def _plan(self, traced, leaves, paths, seed, progress, clear: bool = False):
        """Run the program abstractly to find the kernels it needs, and start compiling the
        missing ones on worker threads; returns the planning runtime (for its statistics)
        and the pool of workers."""
        planner = self._emulator(seed, plan=True)
        advance = progress.phase("planning", count_equations(traced.jaxpr.jaxpr))
        self._interpret(
            planner,
            traced,
            leaves,
            paths,
            abstract=True,
            ideal=True,
            on_equation=advance,
            clear=clear,
        )
        progress.done()
        advance = progress.phase("compiling kernels", len(planner.pending))
        return planner, planner.compile_pending(on_compiled=advance)

    @contextlib.contextmanager
    def _progress(self, jaxpr, abstract: bool):
        """A transient progress bar over the call's phases (planning, compiling kernels,
        running), or a silent stand-in."""
        show = self.config.progress
        if show is None:
            show = sys.stderr.isatty() and count_equations(jaxpr) > PROGRESS_MIN_EQUATIONS
        if not show:
            yield _Silent()
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
        )

        title = f"{self.__name__} under {self.config.protocol}"
        with Progress(
            "[bold]{task.description}[/bold] " + title.replace("[", r"\["),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
        ) as bar:
            yield _Bar(bar)

    def _input(self, interpreter, kind, leaf, aval, name, abstract):
        if kind.name == "handle":
            return self._handle_input(interpreter, leaf, name, abstract)
        raw = leaf.value if is_marker(leaf) else leaf
        if not encodable(aval.dtype):
            raise EncodingError(
                f"secjax cannot take argument {name} of dtype {aval.dtype}: "
                "only booleans, integers and real floats have a ring encoding"
            )
        if kind.name == "public":
            return Public(jax.numpy.asarray(raw, aval.dtype))
        is_private = isinstance(leaf, Private)
        owner = leaf.owner if is_private else self.config.input_party
        if not 0 <= owner < self.config.parties:
            raise SecjaxError(
                f"argument {name} is private to party {owner}, but "
                f"{self.config.protocol} runs {self.config.parties} parties"
            )
        ctx = interpreter.ctx
        runtime = interpreter.protocol.runtime
        if not runtime.holds(owner):  # a party process without this input: a placeholder
            if not isinstance(raw, jax.ShapeDtypeStruct):
                raise SecjaxError(
                    f"argument {name} belongs to party {owner}; pass this party "
                    "a jax.ShapeDtypeStruct placeholder, not its value"
                )
            value = jax.numpy.zeros(aval.shape, aval.dtype)
            return Private(value, owner) if is_private else ctx.share(value, owner)
        if not abstract and isinstance(raw, jax.ShapeDtypeStruct):
            raise SecjaxError(
                f"argument {name} is party {owner}'s input, and party {owner} "
                "was given only a placeholder for it"
            )
        if abstract and isinstance(raw, jax.ShapeDtypeStruct):
            if is_private:  # its owner's local work costs nothing: any value of its shape
                return Private(jax.numpy.zeros(aval.shape, aval.dtype), owner)
            encoded = jax.ShapeDtypeStruct(raw.shape, self.config.ring.dtype)
            return Secret(
                interpreter.protocol.share(encoded, owner), tuple(aval.shape), np.dtype(aval.dtype)
            )
        try:
            ring_ops.check_range(self.config.ring, raw, scale_of(self.config.ring, aval.dtype))
        except OverflowError as exc:
            raise EncodingError(f"secjax cannot take argument {name}: {exc}") from None
        value = jax.numpy.asarray(raw, aval.dtype)
        return Private(value, owner) if is_private else ctx.share(value, owner)

    def _domain(self, protocol) -> Domain:
        """Where shares this call computes on belong (:class:`secjax.handles.Domain`)."""
        config, runtime = self.config, protocol.runtime
        if runtime.party_set is None:
            raise SecjaxError(
                f"{type(runtime).__name__} keeps no secret between calls: "
                "handles (secjax.share, secret_outputs) need a runtime that "
                "names its party set"
            )
        return Domain(
            config.protocol,
            config.parties,
            config.ring_bits,
            config.frac_bits,
            "values" if isinstance(protocol, Ideal) else "shares",
            tuple(p for p in range(config.parties) if runtime.holds(p)),
            runtime.party_set,
        )

    def _handle_input(self, interpreter, handle: Handle, name: str, abstract: bool) -> Secret:
        """The secret a handle argument holds: its shares as they are, no communication.
        A cost report takes any layout (it traces the real protocol's share layout) and
        abstract handles; a run needs the handle's domain to be the call's own."""
        protocol = interpreter.protocol
        domain = self._domain(protocol)
        costing = abstract and not isinstance(protocol, Ideal)
        theirs = (
            dataclasses.replace(handle.domain, layout=domain.layout) if costing else (handle.domain)
        )
        differences = theirs.differences(domain)
        if differences:
            raise SecjaxError(
                f"argument {name} is a handle to shares of "
                f"{handle.domain.describe()}, but {self.__name__} runs "
                f"{domain.describe()}: {'; '.join(differences)}"
            )
        if handle.abstract and not abstract:
            raise SecjaxError(
                f"argument {name} is an abstract handle (shared from "
                "jax.ShapeDtypeStruct placeholders): cost() takes it, a call "
                "needs shares"
            )
        if costing:
            shares = jax.ShapeDtypeStruct(
                protocol.share_shape(handle.shape), self.config.ring.dtype
            )
        elif abstract:
            shares = jax.ShapeDtypeStruct(np.shape(handle.shares), handle.shares.dtype)
        else:
            shares = handle.shares
        return Secret(shares, tuple(handle.shape), np.dtype(handle.dtype))

    def _keep(self, interpreter, value, aval, abstract: bool):
        """An output that stays secret: a handle to its shares. One the parties computed
        from public values alone stays public (every party knows it; sharing it would hide
        nothing), marked so that passing it back in keeps it public; one party's private
        value is shared by its owner."""
        if isinstance(value, Public):
            return Public(jax.numpy.asarray(value.value, aval.dtype))
        if isinstance(value, Private):
            with interpreter.protocol.runtime.cost.label(SHARING):
                value = interpreter.ctx.secret(value)
        shares = value.shares
        if abstract:
            shares = jax.ShapeDtypeStruct(shares.shape, shares.dtype)
        return Handle(
            shares, tuple(aval.shape), np.dtype(aval.dtype), self._domain(interpreter.protocol)
        )

    def _output(self, interpreter, value, aval, abstract: bool):
        """An output revealed to ``output_party`` (every party when ``None``)."""
        protocol, to = interpreter.protocol, self.config.output_party
        # a deferred secret's shares are computed here, outside the reveal: computing
        shares = value.shares if isinstance(value, Secret) else None
        with protocol.runtime.cost.label(REVEALING):
            if isinstance(value, Private) and to is not None and value.owner != to:
                shares = interpreter.ctx.secret(value).shares  # the owner shares it
            if shares is None:
                return jax.numpy.asarray(value.value, aval.dtype)
            opened = protocol.reveal(shares, to=to)
        if abstract:
            return jax.ShapeDtypeStruct(aval.shape, aval.dtype)
        return ring_ops.decode(
            protocol.ring, opened, scale_of(protocol.ring, aval.dtype), aval.dtype
        )


class _Silent:
    """The progress of a call nobody watches."""

    def phase(self, name: str, total: int):
        """Start a phase of ``total`` steps; returns the callable that advances it."""
        return None

    def done(self) -> None:
        """Mark the latest phase complete."""


class _Bar(_Silent):
    """A rich progress bar with one line per phase (compiling and running overlap)."""

    def __init__(self, bar):
        self._bar = bar
        self._task = None

    def phase(self, name: str, total: int):
        task = self._task = self._bar.add_task(name, total=total)
        return lambda: self._bar.advance(task)

    def done(self) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=self._bar.tasks[-1].total)


def _without_dead_code(closed: ClosedJaxpr) -> ClosedJaxpr:
    """Drop equations no output depends on: under MPC they would still cost messages
    (Hugging Face models compute a pooler even when only the hidden states are used)."""
    return ClosedJaxpr(drop_dead_code(closed.jaxpr), closed.consts)


@dataclasses.dataclass(frozen=True)
class InputKind:
    """How a flat argument enters a secure call: ``"public"`` (every party holds it),
    ``"private"`` to ``owner`` (that party computes on it in the clear), ``"secret"``
    (shared by the input party) or ``"handle"`` (shares an earlier call made)."""

    name: str
    owner: int | None = None


def _classify(leaf) -> tuple[InputKind, Any]:
    if isinstance(leaf, Handle):
        return InputKind("handle"), jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
    if isinstance(leaf, Public):
        return InputKind("public"), leaf.value
    if isinstance(leaf, Private):
        return InputKind("private", leaf.owner), leaf.value
    return InputKind("secret"), leaf


def secure_jit(
    fun: Callable | None = None,
    *,
    config: Config | None = None,
    secret_outputs: Any = False,
    **options,
):
    """Compile ``fun`` for secure execution.

    Usable bare (``@secure_jit``) or with options (``secure_jit(f, protocol="semi2k",
    parties=3, ring_bits=64, frac_bits=18)``), or with a :class:`Config`. The result is
    called like ``fun`` and returns the same pytree, shapes and dtypes; every argument is
    secret unless marked with :func:`public` or :func:`private`, or passed as a handle
    (:func:`share`). ``secret_outputs`` names the outputs that stay secret (see
    :class:`SecureFunction`): they come back as handles instead of being revealed.
    """
    if config is not None and options:
        raise TypeError("pass either config= or keyword options, not both")
    config = config or Config(**options)
    if fun is None:
        return functools.partial(secure_jit, config=config, secret_outputs=secret_outputs)
    if isinstance(fun, SecureFunction):
        raise SecjaxError("function is already wrapped by secure_jit")
    return SecureFunction(fun, config, secret_outputs)


def _identity(tree):
    return tree


def share(tree, party: int = 0, *, config: Config | None = None, **options):
    """Secret-share ``tree``'s arrays once, from party ``party``: returns the same pytree of
    :class:`~secjax.handles.Handle` s, which calls of the same protocol, parties and ring take
    in place of the arrays at no further cost (a model's weights, shared once for many
    queries). Leaves marked :func:`public` stay public; ``jax.ShapeDtypeStruct`` leaves give
    abstract handles, for :meth:`SecureFunction.cost`. The configuration is ``config`` or
    the keyword ``options`` of :class:`Config`. Sharing costs what it costs as a call's
    input; its report is that of ``secure_jit(lambda t: t, secret_outputs=True)``."""
    if config is not None and options:
        raise TypeError("pass either config= or keyword options, not both")
    config = dataclasses.replace(config or Config(**options), input_party=party)
    sharer = SecureFunction(_identity, config, secret_outputs=True)
    abstract = any(
        isinstance(leaf, jax.ShapeDtypeStruct)
        or (isinstance(leaf, Private) and isinstance(leaf.value, jax.ShapeDtypeStruct))
        for leaf in jax.tree.leaves(tree, is_leaf=is_marker)
    )
    outputs, _, _ = sharer._evaluate((tree,), {}, abstract=abstract)
    return outputs


def reveal(tree, to: int | None = None):
    """Open the handles in ``tree`` (to every party, or to party ``to`` only), returning the
    same pytree with arrays in their place; :func:`public`-marked values are unwrapped and
    other leaves returned as they are. The handles must share one domain (protocol, parties,
    ring, layout); revealing costs what revealing a call's outputs does."""
    leaves, tree_def = jax.tree.flatten(tree, is_leaf=is_marker)
    handles = [leaf for leaf in leaves if isinstance(leaf, Handle)]
    opened = iter(())
    if handles:
        domains = {handle.domain for handle in handles}
        if len(domains) > 1:
            raise SecjaxError(
                "reveal() takes handles of one domain; these come from "
                + " and ".join(sorted(d.describe() for d in domains))
            )
        domain = domains.pop()
        if domain.party_set != Emulator.party_set:
            raise SecjaxError(
                f"handles of {domain.describe()} are opened by that party "
                "set's runtime, not in this process"
            )
        config = Config(
            protocol=domain.protocol,
            parties=domain.parties,
            ring_bits=domain.ring_bits,
            frac_bits=domain.frac_bits,
            emulation="ideal" if domain.layout == "values" else "protocol",
            output_party=to,
        )
        opened = iter(SecureFunction(_identity, config)(handles))
    return tree_def.unflatten(
        [
            next(opened)
            if isinstance(leaf, Handle)
            else leaf.value
            if isinstance(leaf, Public)
            else leaf
            for leaf in leaves
        ]
    )
