"""Authenticated, encrypted links between the nodes of a cluster: pyzmq with CURVE.

CURVE (CurveZMQ: Curve25519 key exchange, XSalsa20-Poly1305 boxes, perfect forward secrecy
per connection) gives an authenticated, encrypted channel without a certificate authority:
every node's long-term public key is listed in the cluster file, each connecting socket pins
the key of the node it connects to, and each listening socket accepts only keys the cluster
file lists (a ZAP handler; unknown keys are rejected and counted).

**Sockets.** Every node binds one ROUTER (a CURVE server) and connects one DEALER (a CURVE
client, routing id = its own name) to every peer's ROUTER. What node X sends to node Y goes
out of X's ROUTER into Y's DEALER for X: each receiver reads one socket *per sender*, only
when it expects that sender, so ZeroMQ's high-water marks and TCP bound everything in
flight: a sender that runs ahead waits (never longer than the timeout). A queue holds
:data:`QUEUE_MESSAGES` messages, or as many of the largest the link carries as fit in
:data:`QUEUE_BYTES` (at least two): :func:`queue_messages`. The other way, DEALER to
ROUTER, carries the few control messages a node must see whatever it waits for: hellos,
aborts, the dealer's "done", and clients' queries.

**Limits.** Every socket has ``maxmsgsize``: a listening ROUTER, which anyone who can reach
the port may send to before authenticating, takes at most the largest control or query
message (a few bytes to the client's input size); a DEALER, which connects only to a pinned
peer key, at most the largest message the program sends. A larger frame drops the
connection before it is buffered.

**Sessions.** Nodes meet by hellos carrying the program digest, a random nonce and the link
seeds; the session identifier is a hash of every node's nonce, and every later message
carries it (:mod:`secjax.runtime.wire`): a message from a process of an earlier run is
rejected. Messages of an earlier, failed query of the same session are dropped.

**What authenticated channels protect, and what not.** They stop outsiders from reading,
altering, injecting or replaying messages, and from posing as a node. They do not make the
protocols secure against a *cluster member* that deviates: the protocols are semi-honest
(a party that follows the protocol learns nothing; one that sends wrong values can change
the output without being detected), and the parties named in the cluster file must not
collude beyond the protocol's threshold.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import threading
import time

import numpy as np

from secjax.runtime.cluster import Cluster, load_secret_key
from secjax.runtime.faults import (
    MalformedMessage,
    NetworkError,
    PeerAborted,
    PeerTimeout,
    ProgramMismatch,
    Stopped,
)
from secjax.runtime.wire import (
    KIND_ABORT,
    KIND_DATA,
    KIND_DONE,
    KIND_HELLO,
    KIND_NAMES,
    KIND_QUERY,
    KIND_START,
    MAX_HEADER,
    Message,
    decode_message,
    encode_header,
    wire_id,
)

QUEUE_MESSAGES = 16  # messages queued per link and direction before a sender waits...
QUEUE_BYTES = 64 << 20  # ...or fewer, so that a queue of the largest messages stays this small
MAX_PENDING_QUERIES = 16  # clients' queries a party holds until the leader starts them
NONCE_BYTES = 8
SEED_BYTES = 32
DIGEST_BYTES = 32
HELLO_BYTES = DIGEST_BYTES + NONCE_BYTES + SEED_BYTES
_POLL_MS = 200


def queue_messages(largest: int) -> int:
    """How many messages a link queues each way when its largest is ``largest`` bytes:
    :data:`QUEUE_MESSAGES`, fewer where they would pass :data:`QUEUE_BYTES`, at least two."""
    return max(2, min(QUEUE_MESSAGES, QUEUE_BYTES // max(1, MAX_HEADER + int(largest))))


@dataclasses.dataclass
class WireStats:
    """What this node put on the wire (application level; CURVE and ZMTP add their own):
    protocol messages per destination, and control messages (hellos, starts, dones, client
    traffic) apart."""

    payload: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    header: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    messages: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    control: int = 0

    def total(self, what: str = "payload") -> int:
        return sum(getattr(self, what).values())


class Transport:
    """One node's links to its peers (and, on a served party, to clients)."""

    def __init__(
        self,
        cluster: Cluster,
        me,
        secret_key_file=None,
        *,
        keys=None,
        timeout: float | None = None,
        peers=None,
        max_message: int = 1 << 20,
        max_request: int = HELLO_BYTES,
    ):
        import zmq
        from zmq.auth.thread import ThreadAuthenticator

        self.cluster = cluster
        self.me = str(me)
        if self.me not in cluster.nodes:
            raise NetworkError(f"party {self.me!r} is not in the cluster config")
        self.timeout = cluster.timeout if timeout is None else float(timeout)
        if keys is None:
            keys = load_secret_key(secret_key_file or cluster.default_key_path(self.me))
        public, secret = keys
        if public != cluster.nodes[self.me].public_key:
            raise NetworkError(
                f"the key given to party {self.me} is not the public key the "
                "cluster config lists for it"
            )
        self.peers = [n for n in cluster.nodes if n != self.me] if peers is None else list(peers)
        self.stats = WireStats()
        self.rejected = 0
        self.dropped = 0
        self.session = 0
        self.query = 0
        self.finished: collections.deque = collections.deque(maxlen=256)
        self.queries: collections.deque = collections.deque()
        self.done: dict[int, set] = collections.defaultdict(set)
        self._early: list = []  # control messages that came before the session was fixed
        self._recv_seq = collections.Counter()
        self._send_seq = collections.Counter()
        self._lock = threading.Lock()
        names = {node.public_key: name for name, node in cluster.nodes.items()}
        names.update({key: name for name, key in cluster.clients.items()})
        transport = self

        class _Keys:
            def callback(self, domain, key):
                ok = key in names and names[key] != transport.me
                if not ok:
                    with transport._lock:
                        transport.rejected += 1
                return ok

        class _Authenticator(ThreadAuthenticator):
            def curve_user_id(self, client_public_key):
                from zmq.utils import z85

                return names[z85.encode(client_public_key)]

        self._zmq = zmq
        self.context = zmq.Context()
        self.auth = _Authenticator(self.context)
        self.auth.start()
        self.auth.configure_curve_callback("secjax", credentials_provider=_Keys())
        self.router = self.context.socket(zmq.ROUTER)
        self.router.curve_secretkey, self.router.curve_publickey = secret, public
        self.router.curve_server = True
        self.router.zap_domain = b"secjax"
        self.router.router_mandatory = 1
        # what this ROUTER receives from anyone: control and queries, never protocol data
        self.router.maxmsgsize = MAX_HEADER + max(int(max_request), HELLO_BYTES)
        self.router.rcvhwm = queue_messages(max(int(max_request), HELLO_BYTES))
        self.router.sndhwm = queue_messages(max_message)  # protocol data to the peers
        self.router.linger = 0
        self.dealers = {}
        self._monitors = {}
        self._lost: set[str] = set()
        try:
            self.router.bind(cluster.nodes[self.me].address)
        except zmq.ZMQError as exc:
            self.close()
            raise NetworkError(
                f"party {self.me} cannot listen on {cluster.nodes[self.me].address}: {exc}"
            ) from None
        for name in self.peers:
            sock = self.context.socket(zmq.DEALER)
            sock.routing_id = self.me.encode()
            sock.curve_secretkey, sock.curve_publickey = secret, public
            sock.curve_serverkey = cluster.nodes[name].public_key
            sock.maxmsgsize = MAX_HEADER + int(max_message)
            sock.rcvhwm = queue_messages(max_message)
            sock.sndhwm = QUEUE_MESSAGES  # control messages only
            sock.linger = 1000
            self._monitors[name] = sock.get_monitor_socket(
                zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
            )
            sock.connect(cluster.nodes[name].address)
            self.dealers[name] = sock

    # -- meeting ---------------------------------------------------------------------------
    def meet(self, digest: bytes, links: dict[str, bytes]) -> dict[str, bytes]:
        """Exchange hellos with every peer: check everyone runs the program ``digest``, send
        each peer the link seed ``links.get(peer)`` and return the seeds the peers sent; fix
        the session identifier."""
        if len(digest) != DIGEST_BYTES:
            raise ValueError("program digest must be 32 bytes")
        nonce = os.urandom(NONCE_BYTES)
        for peer in self.peers:
            payload = digest + nonce + links.get(peer, bytes(SEED_BYTES))
            self._upstream(peer, KIND_HELLO, np.frombuffer(payload, np.uint8), block=True)
        nonces, seeds = {self.me: nonce}, {}
        deadline = time.monotonic() + self.timeout
        while len(seeds) < len(self.peers):
            waiting = sorted(set(self.peers) - set(seeds))
            name, msg = self._next_control(
                deadline, waiting, "hello: connecting", kinds=(KIND_HELLO,)
            )
            if name in seeds or name not in self.peers:
                raise MalformedMessage(f"a second hello from {name}")
            got = msg.payload
            if msg.shape != (HELLO_BYTES,) or got[:DIGEST_BYTES] != digest:
                raise ProgramMismatch(
                    f"party {name} runs a different program (jaxpr, config, "
                    f"public inputs or input shapes) than party {self.me}"
                )
            nonces[name] = got[DIGEST_BYTES : DIGEST_BYTES + NONCE_BYTES]
            seeds[name] = got[DIGEST_BYTES + NONCE_BYTES :]
        h = hashlib.sha256(b"secjax-session")
        for name in sorted(nonces):
            h.update(name.encode() + b"\x00" + nonces[name])
        self.session = int.from_bytes(h.digest()[:8], "little") or 1
        early, self._early = self._early, []
        for frames in early:  # now checked against the session
            self._control(frames, "hello: connecting")
        return seeds

    # -- queries -------------------------------------------------------------------------------
    def begin(self, query: int, started_by: str | None = None) -> None:
        """Start query ``query``: sequence numbers restart; messages of earlier queries are
        dropped from now on. ``started_by``: the peer whose start message (its first message
        of the query) was already read."""
        if self.query:
            self.finished.append(self.query)
        self.query = query
        self._recv_seq.clear()
        self._send_seq.clear()
        if started_by is not None:
            self._recv_seq[started_by] = 1

    def end(self) -> None:
        """The current query is over (answered or failed): its late messages are dropped."""
        if self.query:
            self.finished.append(self.query)
        self.query = 0

    def next_start(self, leader: str, stop=None) -> Message:
        """Wait (until ``stop`` is set) for the leader's start of the next query, dropping
        leftovers of earlier queries; the caller then begins that query."""
        sock = self.dealers[leader]
        while True:
            if stop is not None and stop.is_set():
                raise Stopped
            ready = dict(self._poller(sock).poll(_POLL_MS))
            if self.router in ready:
                self._control(self.router.recv_multipart(copy=False), "the next query")
            if sock not in ready:
                continue
            msg = decode_message(sock.recv_multipart(copy=False), self._who(leader))
            if msg.sender != wire_id(leader) or msg.session != self.session:
                self._check(leader, msg, "the next query")  # raises
            if msg.kind == KIND_START and msg.seq == 0:
                return msg
            if msg.query not in self.finished:
                raise MalformedMessage(
                    f"a {msg.kind_name} message from {self._who(leader)} "
                    f"of query {msg.query:x} while waiting for a start"
                )
            self.dropped += 1

    # -- sending -------------------------------------------------------------------------------
    def send(self, dst: str, kind: int, step: int, array) -> None:
        """Send ``array`` to peer (or client) ``dst``; waits while ``dst``'s queue is full,
        at most ``timeout`` seconds, watching for aborts meanwhile."""
        zmq = self._zmq
        array = np.ascontiguousarray(array)
        seq = self._send_seq[dst]
        self._send_seq[dst] += 1
        header = encode_header(
            kind, self.me, self.session, self.query, step, seq, array.dtype, array.shape
        )
        frames = [dst.encode(), header, array]  # sent from the array's memory
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.router.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                break
            except zmq.ZMQError as exc:
                if exc.errno not in (zmq.EAGAIN, zmq.EHOSTUNREACH):
                    raise
                if time.monotonic() > deadline:
                    state = (
                        "is not connected" if exc.errno == zmq.EHOSTUNREACH else "took no message"
                    )
                    raise PeerTimeout(
                        f"party {self.me}: {self._who(dst)} {state} within "
                        f"{self.timeout:g} s (step {step}): it stopped, hangs, "
                        "or never connected"
                    ) from None
                self._poll_control(10)
        if kind == KIND_DATA:
            self.stats.payload[dst] += array.nbytes
            self.stats.header[dst] += len(header)
            self.stats.messages[dst] += 1
        else:
            self.stats.control += len(header) + array.nbytes

    def reply(self, client: str, kind: int, array, *, best_effort: bool = False) -> None:
        """Answer ``client`` (a result, or that its query failed); a client that is gone
        raises :class:`NetworkError` (``best_effort``: nothing)."""
        zmq = self._zmq
        array = np.ascontiguousarray(array)
        header = encode_header(
            kind, self.me, self.session, self.query, 0, 0, array.dtype, array.shape
        )
        try:
            self.router.send_multipart(
                [client.encode(), header, array.tobytes()], flags=zmq.NOBLOCK, copy=False
            )
        except zmq.ZMQError as exc:
            if not best_effort:
                raise NetworkError(
                    f"party {self.me} cannot answer client {client}: "
                    f"{exc.strerror} (the client is gone?)"
                ) from None
            return
        self.stats.control += len(header) + array.nbytes

    def _upstream(self, dst: str, kind: int, array, *, block: bool = False) -> None:
        """A control message to ``dst``'s ROUTER (hello, abort, done)."""
        zmq = self._zmq
        array = np.ascontiguousarray(array)
        header = encode_header(
            kind, self.me, self.session, self.query, 0, 0, array.dtype, array.shape
        )
        flags = 0 if block else zmq.NOBLOCK
        self.dealers[dst].send_multipart([header, array.tobytes()], flags=flags)
        self.stats.control += len(header) + array.nbytes

    def notify(self, dst: str, kind: int) -> None:
        """Tell ``dst`` this node finished (``KIND_DONE``) or stopped (``KIND_ABORT``) the
        current query; best effort, never blocks."""
        try:
            self._upstream(dst, kind, np.zeros(0, np.uint8))
        except self._zmq.ZMQError:
            pass

    def abort(self) -> None:
        """Tell every peer this node stopped (best effort, never blocks)."""
        for dst in self.peers:
            self.notify(dst, KIND_ABORT)

    # -- receiving -------------------------------------------------------------------------
    def recv(
        self,
        src: str,
        kind: int,
        step: int | None,
        dtype,
        shape,
        *,
        what: str = "",
        wait: float | None = None,
    ) -> np.ndarray:
        """The next message from ``src`` of the current query: checked against the session,
        the expected kind, step, sequence number, dtype and shape. Raises within the timeout
        (or ``wait`` seconds) if none comes, and at once if any peer aborts."""
        wait = self.timeout if wait is None else wait
        deadline = time.monotonic() + wait
        sock = self.dealers[src]
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerTimeout(self._timeout_text(src, step, what, wait))
            ready = dict(self._poller(sock).poll(min(int(left * 1000) + 1, _POLL_MS)))
            if self.router in ready:
                self._control(self.router.recv_multipart(copy=False), what)
            if sock in ready:
                msg = self._check(
                    src, decode_message(sock.recv_multipart(copy=False), self._who(src)), what
                )
                if msg is not None:
                    return self._expect(src, msg, kind, step, dtype, shape, what).array()

    def _poller(self, sock):
        poller = self._zmq.Poller()
        poller.register(sock, self._zmq.POLLIN)
        poller.register(self.router, self._zmq.POLLIN)
        return poller

    def _check(self, src: str, msg: Message, what: str) -> Message | None:
        """``msg`` if it belongs to this session and query; ``None`` for a leftover of an
        earlier query of this session (dropped)."""
        if msg.sender != wire_id(src):
            raise MalformedMessage(
                f"message from {self._who(src)} claims to come from sender id {msg.sender}"
            )
        if msg.session != self.session:
            raise MalformedMessage(
                f"message from {self._who(src)} of session {msg.session:016x}, this session "
                f"is {self.session:016x}: a process left over from an earlier run? (rejected)"
            )
        if msg.query != self.query:
            if msg.query in self.finished:
                self.dropped += 1
                return None
            raise MalformedMessage(
                f"message from {self._who(src)} of query {msg.query:x}, "
                f"expected query {self.query:x}"
            )
        return msg

    def _expect(self, src, msg, kind, step, dtype, shape, what) -> Message:
        seq = self._recv_seq[src]
        self._recv_seq[src] += 1
        problems = []
        if msg.kind != kind:
            problems.append(f"kind {msg.kind_name}, expected {KIND_NAMES[kind]}")
        if msg.seq != seq:
            problems.append(f"sequence number {msg.seq}, expected {seq}")
        if step is not None and msg.step != step:
            problems.append(f"step {msg.step}, expected {step} (the parties diverged)")
        if msg.dtype != np.dtype(dtype) or msg.shape != tuple(shape):
            problems.append(
                f"{msg.dtype}{list(msg.shape)}, expected {np.dtype(dtype)}{list(shape)}"
            )
        if problems:
            raise MalformedMessage(
                f"message from {self._who(src)}"
                f"{' for ' + what if what else ''}: " + "; ".join(problems)
            )
        return msg

    # -- the ROUTER: control messages and queries ----------------------------------------
    def _poll_control(self, ms: int, what: str = "") -> None:
        if self.router.poll(ms):
            self._control(self.router.recv_multipart(copy=False), what)

    def _next_control(self, deadline: float, waiting, what: str, kinds) -> tuple[str, Message]:
        """The next control message of one of ``kinds`` on the ROUTER (others are handled)."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerTimeout(self._timeout_text(", ".join(waiting), None, what, self.timeout))
            if self.router.poll(min(int(left * 1000) + 1, _POLL_MS)):
                got = self._control(self.router.recv_multipart(copy=False), what, kinds)
                if got is not None:
                    return got

    def _control(self, frames, what: str, kinds=()) -> tuple[str, Message] | None:
        """Handle one ROUTER message: an abort of the current query raises, a query is kept
        for the leader's start, a done is counted; one of ``kinds`` is returned."""
        if len(frames) < 1:
            raise MalformedMessage("an empty message")
        user = frames[-1].get("User-Id")
        name = bytes(frames[0]).decode("ascii", "replace")
        if user != name:
            raise MalformedMessage(f"a node authenticated as {user!r} uses the routing id {name!r}")
        msg = decode_message(frames[1:], self._who(name))
        if msg.sender != wire_id(name):
            raise MalformedMessage(
                f"message from {self._who(name)} claims to come from sender id {msg.sender}"
            )
        if msg.kind in kinds:
            return name, msg
        if msg.kind == KIND_QUERY and name in self.cluster.clients:
            if len(self.queries) >= MAX_PENDING_QUERIES:
                self.queries.popleft()
                self.dropped += 1
            self.queries.append((name, msg))
            return None
        if name not in self.cluster.nodes:
            raise MalformedMessage(f"client {name} sent a {msg.kind_name} message")
        if not self.session and msg.kind != KIND_HELLO:
            # a peer that has met everyone may go on while this node still waits for a
            # hello: its message waits until the session is fixed
            self._early.append(frames)
            return None
        if msg.session != self.session:
            if msg.kind == KIND_HELLO:
                raise MalformedMessage(f"a second hello from {self._who(name)}: did it restart?")
            raise MalformedMessage(
                f"message from {self._who(name)} of session {msg.session:016x}, this session "
                f"is {self.session:016x}: a process left over from an earlier run? (rejected)"
            )
        if msg.kind == KIND_ABORT and msg.query == self.query:
            raise PeerAborted(
                f"party {name} stopped with an error (party {self.me} was "
                f"waiting{' for ' + what if what else ''}){self._lost_text()}"
            )
        if msg.kind == KIND_DONE and msg.query not in self.finished:
            # a fast party may finish a query before this node (the dealer) has begun it
            self.done[msg.query].add(name)
        return None

    def take_query(
        self, client: str | None, query: int, wait: float | None = None, stop=None
    ) -> tuple[str, Message]:
        """The query ``query`` (any query if 0) of ``client`` (any client if ``None``),
        waiting at most ``wait`` seconds (``inf``: until ``stop`` is set)."""
        wait = self.timeout if wait is None else wait
        deadline = time.monotonic() + wait
        while True:
            for i, (name, msg) in enumerate(self.queries):
                if (client is None or name == client) and query in (0, msg.query):
                    del self.queries[i]
                    return name, msg
            if time.monotonic() > deadline:
                raise PeerTimeout(
                    f"party {self.me}: no query {query:x} from client {client} "
                    f"within {wait:g} s: the client stopped or never sent it"
                )
            if stop is not None and stop.is_set():
                raise Stopped
            self._poll_control(_POLL_MS)

    def wait_done(self, parties, what: str = "") -> None:
        """Wait until every party in ``parties`` said it finished the current query (the
        dealer does, so that it learns of every abort)."""
        deadline = time.monotonic() + self.timeout
        while not set(parties) <= self.done[self.query]:
            if time.monotonic() > deadline:
                missing = sorted(set(parties) - self.done[self.query])
                raise PeerTimeout(
                    self._timeout_text(", ".join(missing), None, what or "done", self.timeout)
                )
            self._poll_control(_POLL_MS, what)
        self.done.pop(self.query)

    # -- text ------------------------------------------------------------------------------
    def _who(self, name: str) -> str:
        return f"client {name}" if name in self.cluster.clients else f"party {name}"

    def _timeout_text(self, src, step, what, wait) -> str:
        node = self.cluster.nodes.get(src)
        text = (
            f"party {self.me}: no message from party {src}"
            f"{f' ({node.address})' if node else ''} within {wait:g} s"
        )
        if step is not None:
            text += f" at step {step}"
        if what:
            text += f" ({what})"
        text += ": it stopped, hangs, or never connected" + self._lost_text()
        if self.rejected:
            text += (
                f"; {self.rejected} connection attempt(s) with a CURVE key not in the "
                "cluster config were rejected"
            )
        return text

    def _lost_text(self) -> str:
        """Which peers' connections closed (a killed process's do at once): the likely
        cause when another peer's silence or abort is what this node saw."""
        from zmq.utils.monitor import recv_monitor_message

        zmq = self._zmq
        for name, monitor in self._monitors.items():
            while monitor.poll(0):
                event = recv_monitor_message(monitor)["event"]
                if event == zmq.EVENT_DISCONNECTED:
                    self._lost.add(name)
                elif event == zmq.EVENT_CONNECTED:
                    self._lost.discard(name)
        lost = sorted(self._lost - {self.me})
        return f"; the connection to {', '.join(map(self._who, lost))} closed" if lost else ""

    def close(self) -> None:
        for name, sock in getattr(self, "dealers", {}).items():
            sock.disable_monitor()
            self._monitors[name].close(linger=0)
            sock.close()
        if getattr(self, "router", None) is not None:
            self.router.close(linger=0)
        if getattr(self, "auth", None) is not None:
            self.auth.stop()
        self.context.term()


class ClientLinks:
    """An outside client's links: one DEALER per computing party (routing id: the client's
    name), a CURVE client pinned to that party's key. It sends each party its query and
    reads the party's answer."""

    def __init__(
        self,
        cluster: Cluster,
        name: str,
        keys,
        *,
        timeout: float | None = None,
        max_message: int = 1 << 20,
    ):
        import zmq

        if name not in cluster.clients:
            raise NetworkError(f"client {name!r} is not in the cluster config's [clients]")
        public, secret = keys
        if public != cluster.clients[name]:
            raise NetworkError(
                f"the key given to client {name} is not the public key the "
                "cluster config lists for it"
            )
        self.cluster = cluster
        self.name = name
        self.timeout = cluster.timeout if timeout is None else float(timeout)
        self._zmq = zmq
        self.context = zmq.Context()
        self.dealers = {}
        for party in cluster.parties:
            sock = self.context.socket(zmq.DEALER)
            sock.routing_id = name.encode()
            sock.curve_secretkey, sock.curve_publickey = secret, public
            sock.curve_serverkey = cluster.nodes[party].public_key
            sock.maxmsgsize = MAX_HEADER + int(max_message)
            sock.sndhwm = sock.rcvhwm = queue_messages(max_message)
            sock.linger = 0
            sock.connect(cluster.nodes[party].address)
            self.dealers[party] = sock

    def send(self, party: str, kind: int, query: int, array) -> None:
        array = np.ascontiguousarray(array)
        header = encode_header(kind, self.name, 0, query, 0, 0, array.dtype, array.shape)
        try:
            self.dealers[party].send_multipart(
                [header, array.tobytes()], copy=False, flags=self._zmq.NOBLOCK
            )
        except self._zmq.Again:
            raise PeerTimeout(f"client {self.name}: party {party} takes no query") from None

    def receive(self, party: str, query: int, wait: float) -> Message:
        """Party ``party``'s answer to query ``query`` (answers to earlier queries are
        dropped), within ``wait`` seconds."""
        sock = self.dealers[party]
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000) + 1):
                raise PeerTimeout(
                    f"client {self.name}: no answer from party {party} "
                    f"({self.cluster.nodes[party].address}) within {wait:g} s"
                )
            msg = decode_message(sock.recv_multipart(copy=False), f"party {party}")
            if msg.sender != wire_id(party):
                raise MalformedMessage(
                    f"message from party {party} claims to come from sender id {msg.sender}"
                )
            if msg.query == query:
                return msg

    def close(self) -> None:
        for sock in self.dealers.values():
            sock.close()
        self.context.term()
