"""Serving a secure function: long-lived parties answer many queries from outside clients.

**The servers.** Every computing party (and the semi2k dealer) loads the program once,
connects once, and then:

1. *shares the state once*: every ``secjax.private`` leaf (the model owner's weights) is
   secret-shared by its owner and the shares stay in the party processes for every query;
2. *warms up*: a rehearsal of one query, at each node alone, traces every step and compiles
   (or loads from the disk cache) every kernel the program needs;
3. *answers queries* until stopped. Party 0 leads: it takes the next client query and sends
   every other node a ``start`` naming it, so all nodes take queries in one order. A query
   that fails (a malformed query, a client that disappears, a peer's error) is reported and
   aborted at every node, and serving goes on with the next one; messages of a failed query
   are dropped (each message names its query).

**The client.** A client (listed under ``[clients]`` in the cluster file) runs no party.
For each unmarked argument it encodes its value in the ring and splits it into n additive
pieces (n - 1 uniformly random), and it draws a uniformly random mask for each output element,
split the same way; party p receives piece p of each over the authenticated, encrypted
channel. The parties secret-share their pieces (each party is the owner of its own piece:
:meth:`Protocol.share`) and add them up: a secret sharing of the client's value, whatever
the protocol. They evaluate the program on it and the shared state, open ``output + mask``
to every party (a uniformly random value in the ring, which tells them nothing) and send it
to the client, which checks that all parties sent the same, subtracts the mask and decodes.
Only the client learns the output; any n - 1 parties see only uniform pieces.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
from typing import Callable

import jax
import numpy as np

from secjax import ring as ring_ops
from secjax.api import Config, SecureFunction
from secjax.errors import SecjaxError
from secjax.protocols import PROTOCOLS
from secjax.runtime.cluster import Cluster
from secjax.runtime.faults import MalformedMessage, NetworkError, ProgramMismatch
from secjax.runtime.party import NetworkRuntime, program_digest
from secjax.runtime.transport import DIGEST_BYTES, ClientLinks
from secjax.runtime.wire import (
    DEALER,
    KIND_DATA,
    KIND_DONE,
    KIND_FAILED,
    KIND_QUERY,
    KIND_RESULT,
    KIND_START,
)
from secjax.values import Private, Public, Secret, scale_of

SETUP_QUERY, READY_QUERY = 1, 2  # reserved query ids: sharing the state, the ready barrier
# How long a node waits for its peers to finish compiling at start-up (a cold start compiles
# for minutes; the cluster's timeout, for answers during a query, is far shorter).
READY_WAIT = 1800.0
CLIENT_NAME_BYTES = 64


def serving_config(cluster: Cluster, **options) -> Config:
    return Config(
        protocol=cluster.protocol,
        parties=cluster.n_parties,
        ring_bits=cluster.ring_bits,
        frac_bits=cluster.frac_bits,
        **options,
    )


@dataclasses.dataclass
class Served:
    """A program as servers and clients see it: the traced function, which flat inputs are
    the shared state (``private`` leaves), which the client sends with each query (unmarked
    leaves), and the sizes of a query and of an answer."""

    function: SecureFunction
    args: tuple
    kwargs: dict
    leaves: list
    paths: list
    state: tuple[int, ...]
    client: tuple[int, ...]
    client_avals: list
    out_avals: list
    out_tree: object
    digest: bytes

    @classmethod
    def of(cls, fn: Callable, args, kwargs, config: Config) -> "Served":
        function = SecureFunction(fn, config)
        args, kwargs = tuple(args), dict(kwargs or {})
        traced, leaves, paths = function.trace(args, kwargs)
        invars = traced.jaxpr.jaxpr.invars
        state = tuple(i for i, leaf in enumerate(leaves) if isinstance(leaf, Private))
        client = tuple(
            i for i, leaf in enumerate(leaves) if not isinstance(leaf, (Private, Public))
        )
        return cls(
            function,
            args,
            kwargs,
            leaves,
            paths,
            state,
            client,
            [invars[i].aval for i in client],
            [v.aval for v in traced.jaxpr.jaxpr.outvars],
            traced.out_tree,
            program_digest("secjax-serve-1", config, traced, leaves),
        )

    @property
    def ring(self):
        return self.function.config.ring

    @property
    def query_elements(self) -> int:
        """Ring elements of one party's query: its piece of every client input, then of
        every output mask."""
        return _elements(self.client_avals) + _elements(self.out_avals)

    @property
    def query_bytes(self) -> int:
        return DIGEST_BYTES + self.query_elements * self.ring.dtype.itemsize

    @property
    def answer_bytes(self) -> int:
        return _elements(self.out_avals) * self.ring.dtype.itemsize


def _elements(avals) -> int:
    return sum(math.prod(a.shape) for a in avals)


# -- the client's side -----------------------------------------------------------------------
def _pieces(value: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` additive pieces of the ring array ``value``: n - 1 uniform, the last the rest."""
    random = [
        np.frombuffer(os.urandom(value.nbytes), value.dtype).reshape(value.shape)
        for _ in range(n - 1)
    ]
    last = value.copy()
    for piece in random:
        last -= piece
    return random + [last]


def make_query(served: Served, n: int, values) -> tuple[list[np.ndarray], np.ndarray]:
    """Each party's query payload for the client inputs ``values`` (in ``served.client``
    order), and the output masks (kept by the client)."""
    ring = served.ring
    encoded = []
    for value, aval, i in zip(values, served.client_avals, served.client):
        value = np.asarray(value, aval.dtype)
        if value.shape != tuple(aval.shape):
            raise SecjaxError(
                f"argument {served.paths[i]} has shape {value.shape}, the "
                f"served program takes {tuple(aval.shape)}"
            )
        scale = scale_of(ring, aval.dtype)
        try:
            ring_ops.check_range(ring, value, scale)
        except OverflowError as exc:
            raise SecjaxError(f"cannot send argument {served.paths[i]}: {exc}") from None
        encoded.append(
            np.asarray(ring_ops.encode(ring, value, scale, saturate=False), ring.dtype).reshape(-1)
        )
    n_out = _elements(served.out_avals)
    masks = np.frombuffer(os.urandom(n_out * ring.dtype.itemsize), ring.dtype)
    flat = np.concatenate(encoded + [masks]) if encoded or n_out else np.zeros(0, ring.dtype)
    payloads = [
        np.frombuffer(served.digest + piece.tobytes(), np.uint8) for piece in _pieces(flat, n)
    ]
    return payloads, masks


def read_answer(served: Served, opened: np.ndarray, masks: np.ndarray):
    """The client's output pytree from the opened ``output + mask`` values."""
    ring = served.ring
    values = opened - masks
    outs, at = [], 0
    with jax.enable_x64(True):
        for aval in served.out_avals:
            size = math.prod(aval.shape)
            part = values[at : at + size].reshape(aval.shape)
            at += size
            outs.append(
                np.asarray(
                    ring_ops.decode(ring, part, scale_of(ring, aval.dtype), np.dtype(aval.dtype))
                )
            )
    return jax.tree.unflatten(served.out_tree, outs)


# -- the servers' side ---------------------------------------------------------------------
@dataclasses.dataclass
class QueryRecord:
    """One query as a server saw it: its id, client, outcome, seconds, and what this node
    put on the wire (protocol payload bytes and messages) beside its cost report's bytes."""

    query: int
    client: str
    ok: bool
    error: str
    seconds: float
    payload: int
    messages: int
    cost: int
    rounds: int

    def line(self, node: str) -> str:
        head = f"{node}: query {self.query:016x} from {self.client}"
        if not self.ok:
            return f"{head} FAILED after {self.seconds:.2f} s: {self.error}"
        return (
            f"{head} answered in {self.seconds:.2f} s: sent {self.payload} B in "
            f"{self.messages} messages; cost report {self.cost} B, {self.rounds} rounds"
        )


class Server:
    """One node's side of serving: the runtime, the shared state, the query loop."""

    def __init__(self, served: Served, runtime: NetworkRuntime):
        self.served = served
        self.runtime = runtime
        config = served.function.config
        self.protocol = PROTOCOLS[config.protocol](config.ring, config.parties, runtime)
        self.name = runtime.name
        self.parties = runtime.cluster.parties
        self.state: dict[int, Secret] = {}

    # -- start-up ------------------------------------------------------------------------
    def share_state(self) -> None:
        """Every private leaf, shared by its owner once; the shares stay here."""
        served, runtime = self.served, self.runtime
        runtime.begin_query(SETUP_QUERY)
        keep = SecureFunction(lambda *xs: list(xs), served.function.config)
        with jax.enable_x64(True):
            shared = keep.run_on(runtime, [served.leaves[i] for i in served.state], reveal=False)
        self.state = dict(zip(served.state, shared))
        self._finish(SETUP_QUERY)

    def warm_up(self) -> str:
        """Every step of a query traced and every kernel it needs compiled, or loaded from
        the disk cache, by a rehearsal at this node alone (no message, no waiting for the
        peers; :meth:`NetworkRuntime.rehearsal`), so that the first query runs as fast as
        any. Returns what it did, for the start-up log."""
        runtime = self.runtime
        before = dataclasses.replace(runtime.stats)
        with runtime.rehearsal():
            self._evaluate(np.zeros(self.served.query_elements, self.served.ring.dtype))
        compiled = runtime.stats.compiled - before.compiled
        loaded = runtime.stats.loaded - before.loaded
        return f"kernels ready ({compiled} compiled, {loaded} loaded from the disk cache)"

    def wait_for_peers(self) -> None:
        """Tell every node this one is ready and wait until all are: the rehearsals end at
        different times, and a node still compiling must not be sent a query's messages
        (its peers would time out waiting for its answers)."""
        transport = self.runtime.transport
        transport.begin(READY_QUERY)
        for peer in transport.peers:
            transport.send(peer, KIND_DATA, 0, np.ones(1, np.uint8))
        for peer in transport.peers:
            transport.recv(peer, KIND_DATA, 0, np.uint8, (1,), what="its kernels", wait=READY_WAIT)
        transport.end()

    def _finish(self, query: int) -> None:
        transport = self.runtime.transport
        if self.name == DEALER:
            transport.wait_done(self.parties, what=f"query {query:x}")
        elif self.runtime.cluster.has_dealer:
            transport.notify(DEALER, KIND_DONE)
        transport.end()

    # -- one query -------------------------------------------------------------------------
    def _evaluate(self, piece: np.ndarray) -> np.ndarray:
        """This party's part of one query on its ``piece``: returns ``output + mask``."""
        served, protocol = self.served, self.protocol
        holds = self.runtime.holds
        with jax.enable_x64(True):

            def shared(at, shape):
                """The sum of every party's piece ``[at:at+size]``, each shared by its owner."""
                size = math.prod(shape)
                total = None
                for p in range(len(self.parties)):
                    mine = piece[at : at + size] if holds(p) else np.zeros(size, piece.dtype)
                    s = protocol.share(mine.reshape(shape), owner=p)
                    total = s if total is None else protocol.add(total, s)
                return total

            given, at = dict(self.state), 0
            for i, aval in zip(served.client, served.client_avals):
                given[i] = Secret(
                    shared(at, tuple(aval.shape)), tuple(aval.shape), np.dtype(aval.dtype)
                )
                at += math.prod(aval.shape)
            outs = served.function.run_on(
                self.runtime, served.args, served.kwargs, given=given, reveal=False
            )
            opened = []
            for out, aval in zip(outs, served.out_avals):
                masked = protocol.add(out.shares, shared(at, tuple(aval.shape)))
                at += math.prod(aval.shape)
                opened.append(np.asarray(protocol.reveal(masked, to=None)).reshape(-1))
        return np.concatenate(opened) if opened else np.zeros(0, piece.dtype)

    def _piece(self, msg) -> np.ndarray:
        served = self.served
        if msg.shape != (served.query_bytes,):
            raise MalformedMessage(
                f"a query of {msg.shape} bytes; the served program takes {served.query_bytes}"
            )
        if msg.payload[:DIGEST_BYTES] != served.digest:
            raise ProgramMismatch("the client runs a different program than the servers")
        return np.frombuffer(msg.payload[DIGEST_BYTES:], served.ring.dtype)

    def answer_next(self, stop: threading.Event | None = None) -> QueryRecord:
        """Wait for the next query (party 0 takes it from a client; the others wait for its
        start), answer it, and return what happened; a failed query is aborted everywhere."""
        runtime, transport = self.runtime, self.runtime.transport
        leader = self.parties[0]
        if self.name == leader:
            client, msg = transport.take_query(None, 0, wait=float("inf"), stop=stop)
            query = msg.query
            if query in (0, SETUP_QUERY, READY_QUERY) or query in transport.finished:
                transport.reply(client, KIND_FAILED, np.zeros(0, np.uint8), best_effort=True)
                return QueryRecord(query, client, False, "a query id used before", 0.0, 0, 0, 0, 0)
            runtime.begin_query(query)
        else:
            start = transport.next_start(leader, stop=stop)
            query = start.query
            runtime.begin_query(query, started_by=leader)
            client = start.payload.rstrip(b"\0").decode("ascii", "replace")
        began = time.perf_counter()
        try:
            if self.name == leader:
                name = client.encode().ljust(CLIENT_NAME_BYTES, b"\0")
                for peer in transport.peers:
                    transport.send(peer, KIND_START, 0, np.frombuffer(name, np.uint8))
            if self.name == DEALER:
                piece = np.zeros(self.served.query_elements, self.served.ring.dtype)
            else:
                if self.name != leader:
                    client, msg = transport.take_query(client, query)
                piece = self._piece(msg)
            opened = self._evaluate(piece)
            if self.name != DEALER:
                transport.reply(client, KIND_RESULT, opened)
            self._finish(query)
        except (SecjaxError, jax.errors.JaxRuntimeError) as exc:
            transport.abort()
            if self.name != DEALER:
                transport.reply(client, KIND_FAILED, np.zeros(0, np.uint8), best_effort=True)
            transport.end()
            return self._record(query, client, began, f"{type(exc).__name__}: {exc}")
        return self._record(query, client, began, "")

    def _record(self, query, client, began, error) -> QueryRecord:
        runtime = self.runtime
        cost = runtime.cost.report().total
        own = cost.dealer if self.name == DEALER else cost.sent[runtime.index]
        wire = runtime.transport.stats
        return QueryRecord(
            query,
            client,
            not error,
            error,
            time.perf_counter() - began,
            wire.total("payload"),
            wire.total("messages"),
            own,
            cost.rounds,
        )


def connect_server(
    served: Served, cluster: Cluster, party, *, key=None, timeout: float | None = None
) -> NetworkRuntime:
    """The runtime of one served node: its sockets sized for the program's largest message
    (from the program's cost, computed without running) and for a query."""
    largest = served.function.cost(*served.args, **served.kwargs).largest
    with jax.enable_x64(True):
        return NetworkRuntime(
            cluster,
            party,
            served.ring,
            digest=served.digest,
            secret_key_file=key,
            timeout=timeout,
            max_message=max(largest, served.answer_bytes, CLIENT_NAME_BYTES),
            max_request=served.query_bytes,
        )


class ClientSession:
    """An outside client's connection to the servers of one served program."""

    def __init__(
        self, served: Served, cluster: Cluster, name: str, keys, *, timeout: float | None = None
    ):
        self.served = served
        self.cluster = cluster
        self.links = ClientLinks(
            cluster, name, keys, timeout=timeout, max_message=served.answer_bytes
        )

    def query(self, values, *, wait: float, parties=None):
        """Send the client inputs ``values`` (in ``served.client`` order) and return the
        output; ``parties`` (default all) receive the query: a test stands for a client
        that dies half-way by naming only some."""
        n = self.cluster.n_parties
        query = int.from_bytes(os.urandom(8), "little") | (1 << 63)
        payloads, masks = make_query(self.served, n, values)
        targets = self.cluster.parties if parties is None else [str(p) for p in parties]
        for party in targets:
            self.links.send(party, KIND_QUERY, query, payloads[int(party)])
        if parties is not None:
            return None
        answers = [self.links.receive(party, query, wait) for party in targets]
        failed = [party for party, msg in zip(targets, answers) if msg.kind != KIND_RESULT]
        if failed:
            raise NetworkError(f"the query failed at parties {failed} (their logs say why)")
        if len({msg.session for msg in answers}) != 1:
            raise MalformedMessage("the parties answered from different sessions")
        opened = [msg.array() for msg in answers]
        if any(
            o.dtype != self.served.ring.dtype
            or o.shape != opened[0].shape
            or not np.array_equal(o, opened[0])
            for o in opened
        ):
            raise MalformedMessage("the parties sent different openings of the output")
        return read_answer(self.served, opened[0], masks)

    def close(self) -> None:
        self.links.close()
