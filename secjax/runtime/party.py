"""The party runtime: one OS process per party, protocol steps on the party's own shares.

**The idea.** Protocol steps are SPMD code over arrays whose axis 0 is the party axis. A party
process keeps that axis with size 1 (its own slice), so shapes (``x.shape[1:]``), ``jax.vmap``
over axis 0, ``comm.party_index`` (this party's id) and every elementwise line of a step work
unchanged. :class:`NetworkComm` implements :class:`~secjax.runtime.comm.Comm` with real
blocking exchanges over a :class:`~secjax.runtime.transport.Transport` and returns arrays
shaped as the emulated comm returns them for this party's slice (``all_gather`` gives
``(1, n, ...)``). :class:`NetworkRuntime` offers the :class:`~secjax.runtime.base.Runtime`
interface, runs each step as compiled segments with its messages between them
(:mod:`secjax.runtime.segments`; the segments' executables live in the disk cache, so a
restarted party loads them) and records the exchanges exactly as emulation does, so the
bytes on the wire can be checked against the cost report. Protocols and the interpreter do
not know which runtime they run on.

**Faults.** Every receive waits at most ``timeout`` seconds (cluster config, default 60): a
peer that dies or never connects makes the others fail with :class:`PeerTimeout` naming the
peer, the step and the protocol operation. A party that fails for any other reason sends an
``abort`` message (no payload; the error text stays local) so its peers, the dealer
included, stop at once with :class:`PeerAborted`. Error messages name parties, steps, shapes
and dtypes, never data.

**Randomness.** Everything comes from AES-128-CTR (:class:`secjax.runtime.prg.Stream`) keyed by
seeds from ``os.urandom``: a private stream per party (``random``), and for each ring link
i -> i+1 a seed that party i draws and sends to party i+1 in its hello over the encrypted
channel (``random_pair``: party i's ``with_next`` is party i+1's ``with_prev``).

**The dealer (semi2k).** The dealer is its own process (party id ``dealer``). It draws a
seed for every party and sends it in its hello; it then runs the very same program with
placeholder (zero) inputs, in "dealer view": ``dealer_random_shares`` expands all N parties'
streams to get the dealer's value, ``deal_shares`` sends the last party the correction
``value - sum of the first N-1 parties' PRG shares`` (XOR for ``xor=True``). Every dealer value
is a function of the dealer's own randomness only (Beaver triples, truncation masks, AND
triples, random bits), so the dealer's placeholders never reach what it sends. **What the
dealer learns:** nothing about any input, share or output: it receives only the parties'
hellos (a digest of the public program, which it knows anyway) and their "done" or "abort"
at the end of each run. **What it sends:** the seeds (one per party) and the corrections to
the last party, exactly the ``dealer`` bytes of the cost report; it sends them ahead of need
(offline traffic, no round trip), at most a queue's length ahead of the last party. The last
party learns only corrections, each masked by the other parties' PRG shares.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from secjax.ring import Ring
from secjax.runtime import segments
from secjax.runtime.base import Runtime
from secjax.runtime.cluster import Cluster
from secjax.runtime.comm import Comm, combine
from secjax.runtime.cost import CostLog
from secjax.runtime.faults import NetworkError
from secjax.runtime.kernels import CacheStats, default_cache
from secjax.runtime.prg import Stream
from secjax.runtime.transport import Transport, WireStats
from secjax.runtime.wire import DEALER, KIND_DATA


class NetworkComm(Comm):
    """The Comm of one party process (or of the dealer): arrays carry a party axis of size 1
    holding this party's own slice; exchanges are real messages.

    Every message and every draw of randomness is a host action
    (:func:`secjax.runtime.segments.host`): the step is cut there into compiled segments,
    and the actions run between them in program order. Which messages a party sends or
    receives is static (it depends on the party id only), so each process compiles only its
    own part.
    """

    def __init__(self, runtime: "NetworkRuntime"):
        super().__init__(runtime.n_parties, runtime.ring)
        self._rt = runtime
        self._dealer = runtime.is_dealer
        self._me = runtime.index

    # -- host side ---------------------------------------------------------------------------
    def _on_host(self, fn, result, *args, draw=False):
        """``fn(*numpy args)`` run on the host at this point of the step (a host action of
        :mod:`secjax.runtime.segments`, ``draw``: a draw of randomness); returns its array of
        ``result``'s shape, or nothing for ``result=None``."""

        def action(*values):
            out = fn(*values)
            return [] if result is None else [np.asarray(out, result.dtype)]

        outputs = segments.host(action, [] if result is None else [result], *args, draw=draw)
        return outputs[0] if result is not None else None

    def _what(self) -> str:
        return f"{self._op} under {self._rt.label}"

    def _check(self, x):
        if x.shape[:1] != (1,):
            raise NetworkError(
                f"a party process holds one slice (party axis of size 1); "
                f"got shape {tuple(x.shape)} in {self._op}"
            )

    def _exchange(self, x, sends, recvs, *, stack=False):
        """Send this party's slice of ``x`` to every party in ``sends``, then receive from
        every party in ``recvs`` (as ``x``'s slice shape and dtype)."""
        rt, what = self._rt, self._what()
        result = jax.ShapeDtypeStruct((1, len(recvs), *x.shape[1:]) if stack else x.shape, x.dtype)

        def host(xv):
            for dst in sends:
                rt.transport.send(str(dst), KIND_DATA, rt.step, xv[0])
            got = [
                rt.transport.recv(str(src), KIND_DATA, rt.step, xv.dtype, xv.shape[1:], what=what)
                for src in recvs
            ]
            if not recvs:
                return None
            return np.stack(got)[None] if stack else got[0][None]

        return self._on_host(host, result if recvs else None, x)

    def _draw(self, stream_of, shape, dtype):
        """This party's next draw from the stream ``stream_of(runtime)``, party axis first."""
        rt = self._rt

        def host():
            return stream_of(rt).draw(shape, dtype)[None]

        return self._on_host(host, jax.ShapeDtypeStruct((1, *shape), dtype), draw=True)

    # -- the interface -----------------------------------------------------------------------
    def local_shape(self, x):
        return tuple(x.shape[1:])

    def party_index(self, like):
        return jnp.full((1,) + (1,) * (like.ndim - 1), self._me, jnp.int32)

    def view(self, x, party):
        return x[0]

    def broadcast(self, x):
        return jnp.asarray(x)[None]

    def shift(self, x, offset=1):
        self._check(x)
        self._record((self._payload(x),) * self.n_parties)
        n, me = self.n_parties, self._me
        if self._dealer:
            return jnp.zeros_like(x)
        if offset % n == 0:
            return x
        return self._exchange(x, [(me + offset) % n], [(me - offset) % n])

    def all_gather(self, x):
        self._check(x)
        self._record((self._payload(x) * (self.n_parties - 1),) * self.n_parties)
        if self._dealer:
            return jnp.zeros((1, self.n_parties, *x.shape[1:]), x.dtype)
        others = [p for p in range(self.n_parties) if p != self._me]
        got = self._exchange(x, others, others, stack=True)
        parts = [x if p == self._me else got[:, others.index(p)] for p in range(self.n_parties)]
        return jnp.stack(parts, axis=1)

    def send(self, x, src, dst):
        self._check(x)
        sent = [0] * self.n_parties
        sent[src] = self._payload(x)
        self._record(tuple(sent))
        if self._me == src and src == dst:
            return x
        if self._me == src:
            self._exchange(x, [dst], [])
        elif self._me == dst:
            return self._exchange(x, [], [src])
        return jnp.zeros_like(x)

    def random(self, shape, dtype):
        if self._dealer:
            return jnp.zeros((1, *shape), dtype)
        return self._draw(lambda rt: rt.private, shape, dtype)

    def random_pair(self, shape, dtype):
        if self._dealer:
            zero = jnp.zeros((1, *shape), dtype)
            return zero, zero
        return (
            self._draw(lambda rt: rt.with_next, shape, dtype),
            self._draw(lambda rt: rt.with_prev, shape, dtype),
        )

    def dealer_random_shares(self, shape, dtype, *, xor=False):
        self._need_dealer()
        shape = tuple(shape)
        if self._dealer:

            def host():
                shares = np.stack([s.draw(shape, dtype) for s in self._rt.dealer_streams])
                return combine(shares, xor)

            value = self._on_host(host, jax.ShapeDtypeStruct(shape, dtype), draw=True)
            return value, jnp.zeros((1, *shape), dtype)
        return jnp.zeros(shape, dtype), self._draw(lambda rt: rt.dealer_stream, shape, dtype)

    def deal_shares(self, value, *, xor=False):
        self._need_dealer()
        self._record((0,) * self.n_parties, dealer=self._payload(value[None]), offline=True)
        shape, dtype, last = tuple(value.shape), value.dtype, self.n_parties - 1
        rt, what = self._rt, f"dealer correction in {self._what()}"
        if self._dealer:

            def draw():
                return np.stack([s.draw(shape, dtype) for s in rt.dealer_streams[:last]])

            prg = self._on_host(draw, jax.ShapeDtypeStruct((last, *shape), dtype), draw=True)

            def host(v, prg):
                correction = (v ^ combine(prg, True)) if xor else v - combine(prg, False)
                rt.transport.send(str(last), KIND_DATA, rt.step, correction)

            self._on_host(host, None, value, prg)
            return jnp.zeros((1, *shape), dtype)
        if self._me < last:
            return self._draw(lambda r: r.dealer_stream, shape, dtype)

        def receive():
            got = rt.transport.recv(DEALER, KIND_DATA, rt.step, dtype, shape, what=what)
            return got[None]

        return self._on_host(receive, jax.ShapeDtypeStruct((1, *shape), dtype))

    def _need_dealer(self):
        if not self._rt.cluster.has_dealer:
            raise NetworkError(
                f"{self._op} needs a dealer, and the cluster config has no [parties.dealer]"
            )


class NetworkRuntime(Runtime):
    """Runs protocol steps in one party process (the :class:`Emulator` interface).

    Connects to every peer on construction, exchanges hellos (checking that everyone runs the
    program with digest ``digest``) and the link seeds. Steps run one after the other, each
    as its plan of compiled segments and host actions. Every step's exchanges are recorded
    into ``cost`` exactly as in emulation; ``transport.stats`` counts what actually went out.
    """

    def __init__(
        self,
        cluster: Cluster,
        party,
        ring: Ring,
        *,
        digest: bytes,
        secret_key_file=None,
        keys=None,
        timeout: float | None = None,
        max_message: int,
        max_request: int = 0,
    ):
        self.cluster = cluster
        self.ring = ring
        self.n_parties = cluster.n_parties
        self.name = str(party)
        self.is_dealer = self.name == DEALER
        self.index = self.n_parties if self.is_dealer else int(self.name)
        self.cost = CostLog(self.n_parties)
        self.compile_seconds = 0.0
        self.kernels = default_cache()
        self._plans: dict[tuple, segments.Plan] = {}
        self.rehearsing = False
        self.stats = CacheStats()
        self.abstract = False
        self.step = 0
        self.label = "(setup)"
        self.transport = Transport(
            cluster,
            self.name,
            secret_key_file,
            keys=keys,
            timeout=timeout,
            max_message=max_message,
            max_request=max_request,
        )
        try:
            self._meet(digest)
        except BaseException:
            self.close(failed=True)
            raise

    def _meet(self, digest: bytes) -> None:
        """Hellos with every peer; the seeds this node draws go to the next party (or, from
        the dealer, to every party)."""
        n, i = self.n_parties, self.index
        if self.is_dealer:
            own = {str(p): os.urandom(32) for p in range(n)}
        else:
            own = {str((i + 1) % n): os.urandom(32)}
        received = self.transport.meet(digest, own)
        self.private = Stream(os.urandom(32))
        if self.is_dealer:
            self._seeds = {"dealer": [own[str(p)] for p in range(n)]}
        else:
            self._seeds = {"next": own[str((i + 1) % n)], "prev": received[str((i - 1) % n)]}
            if self.cluster.has_dealer:
                self._seeds["dealer"] = received[DEALER]
        self.queries = 0
        self._streams(0)

    def _streams(self, number: int) -> None:
        """The correlated streams (shared with the neighbours, or with the dealer) of stream
        ``number``: every query starts fresh ones, so a query that failed half-way, having
        drawn more at some parties than at others, leaves no trace in the next."""
        seeds = self._seeds
        if self.is_dealer:
            self.dealer_streams = [Stream(seed, number) for seed in seeds["dealer"]]
            return
        self.with_next = Stream(seeds["next"], number)
        self.with_prev = Stream(seeds["prev"], number)
        if "dealer" in seeds:
            self.dealer_stream = Stream(seeds["dealer"], number)

    def begin_query(self, query: int, started_by: str | None = None) -> None:
        """Start query ``query`` (of a served program): steps, sequence numbers, the cost log
        and the wire counts restart, so that each query's bytes can be set beside its own
        cost report (``started_by``: :meth:`Transport.begin`)."""
        self.step = 0
        self.cost = CostLog(self.n_parties)
        self.queries += 1  # every node begins the same queries in one order
        self._streams(self.queries)
        self.transport.begin(query, started_by)
        self.transport.stats = WireStats()

    def holds(self, party: int) -> bool:
        """Whether this process holds party ``party``'s private data."""
        return not self.is_dealer and party == self.index

    def run(self, step, *arrays, cost_of=None, elementwise=None, whole=(), on_host=False, **static):
        """Run ``step(comm, *arrays, **static)`` as this party; returns its outputs.

        Traced once per (step, static arguments, input shapes) into a
        :class:`~secjax.runtime.segments.Plan`: compiled segments with the messages and draws
        between them on the host. ``elementwise`` steps run at their own shape, so that what
        is sent is what the cost report counts. The exchanges recorded while tracing are
        added to ``cost`` at every call. ``on_host`` steps (moves and sums of shares, which
        send nothing) run as numpy on the host, as in the emulator: no kernel to compile.
        """
        if cost_of is not None:
            raise NetworkError("party processes run the real protocol steps only")
        if on_host:
            self.step += 1
            return step(None, *map(np.asarray, arrays), **static)
        key = (
            step,
            self.ring,
            tuple(sorted(static.items())),
            tuple((tuple(a.shape), np.dtype(a.dtype).str) for a in arrays),
        )
        self.label = self.cost.current_label()
        started = time.perf_counter()
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._plan(step, arrays, static)
        for kernel in plan.kernels():
            if kernel.compiled is None:
                self.kernels.finish(kernel, self.stats)
        self.compile_seconds += time.perf_counter() - started
        self.cost.add(plan.exchanges)
        self.step += 1
        if self.rehearsing:
            return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), plan.out_info)
        return plan.run(*arrays)

    @contextlib.contextmanager
    def rehearsal(self):
        """Within: every step is planned and its kernels compiled (or loaded from the disk
        cache) but not run; results are zeros of the right shapes and nothing is sent. A
        program's control flow never depends on secret values, so a rehearsed call meets
        every step a real one will, at this node alone, without waiting for its peers."""
        self.rehearsing = True
        try:
            yield
        finally:
            self.rehearsing = False

    def _plan(self, step, arrays, static) -> segments.Plan:
        comms = []

        def fn(*xs):
            comm = NetworkComm(self)
            comms.append(comm)
            return step(comm, *xs, **static)

        avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays]
        closed, out_info = jax.make_jaxpr(fn, return_shape=True)(*avals)
        return segments.Plan.of(
            closed, out_info, tuple(comms[0].exchanges), self.kernels, self.stats
        )

    def close(self, *, failed: bool = False) -> None:
        if failed:
            self.transport.abort()
        self.transport.close()


# Config fields that do not change what the parties compute together.
_LOCAL_OPTIONS = ("seed", "progress", "cache", "emulation", "range_guard")


def program_digest(tag: str, config, traced, leaves) -> bytes:
    """SHA-256 of what every node must agree on: ``tag`` (the mode), the configuration's
    fields, the traced jaxpr (with its constants, output tree, input kinds and shapes) and
    the public inputs' values."""
    h = hashlib.sha256()

    def update(part):
        if isinstance(part, (np.ndarray, jax.Array)):
            arr = np.asarray(part)
            h.update(repr((arr.dtype.str, arr.shape)).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"\x00")

    fields = [
        (f.name, getattr(config, f.name))
        for f in dataclasses.fields(config)
        if f.name not in _LOCAL_OPTIONS
    ]
    public = [leaf.value for leaf, kind in zip(leaves, traced.kinds) if kind.name == "public"]
    for part in (
        tag,
        fields,
        str(traced.jaxpr),
        str(traced.out_tree),
        traced.kinds,
        [(tuple(v.aval.shape), str(v.aval.dtype)) for v in traced.jaxpr.jaxpr.invars],
        *traced.jaxpr.consts,
        *[np.asarray(p) for p in public],
    ):
        update(part)
    return h.digest()
