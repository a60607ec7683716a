"""One OS process per party: protocol steps run on the party's own shares, messages go over
authenticated, encrypted ZeroMQ sockets.

**The idea.** Protocol steps are SPMD code over arrays whose axis 0 is the party axis. A party
process keeps that axis with size 1 (its own slice), so shapes (``x.shape[1:]``), ``jax.vmap``
over axis 0, ``comm.party_index`` (this party's id) and every elementwise line of a step work
unchanged. :class:`NetworkComm` implements :class:`~secjax.runtime.comm.Comm` with real
blocking exchanges and returns arrays shaped as the emulated comm returns them for this
party's slice (``all_gather`` gives ``(1, n, ...)``). :class:`NetworkRuntime` offers the
:class:`~secjax.runtime.emulation.Emulator` interface (``run(step, *arrays, **static)``,
``cost``), runs steps eagerly and records their exchanges exactly as emulation does, so the
bytes on the wire can be checked against the cost report. Protocols and the interpreter do
not know which runtime they run on.

**Transport: pyzmq with CURVE.** CURVE (CurveZMQ: Curve25519 key exchange, XSalsa20-Poly1305
boxes, perfect forward secrecy per connection) gives an authenticated, encrypted channel
without a certificate authority: every node's long-term public key is listed in the cluster
config, each client pins the server key it connects to, and each server accepts only clients
whose key is in the list (a ZAP handler; unknown keys are rejected and counted). libzmq is a
mature, widely deployed library; its queues make sends non-blocking, so SPMD steps never
deadlock on send order. Each node binds one PULL socket and connects one PUSH socket to every
peer; the authenticated key of every received message (its ZAP ``User-Id``) must match the
sender named in the message header.

**Framing.** A message is two ZeroMQ frames: a header and the raw array bytes. The header is
``magic "SJX1", kind (hello/data/abort), sender, step, sequence number, dtype code, ndim`` and
``ndim`` 64-bit dimensions, little-endian (:data:`HEADER`). The receiver knows what it
expects (the steps are SPMD), and checks every field: the sender against the authenticated
key, the sequence number per sender (nothing lost, duplicated or reordered), the step counter
(the parties run the same step), the dtype, the shape and the payload length. Anything else
raises :class:`MalformedMessage`.

**Faults.** Every receive waits at most ``timeout`` seconds (cluster config, default 60): a
peer that dies or never connects makes the others fail with :class:`PeerTimeout` naming the
peer, the step and the protocol operation. A party that fails for any other reason sends an
``abort`` message (no payload; the error text stays local) so its peers stop at once with
:class:`PeerAborted`. Error messages name parties, steps, shapes and dtypes, never data.

**Randomness.** Everything comes from ChaCha20 (:mod:`secjax.runtime.prg`) keyed by seeds from
``os.urandom``: a private stream per party (``random``), and for each ring link i -> i+1 a seed
that party i draws and sends to party i+1 in its hello over the encrypted channel
(``random_pair``: party i's ``with_next`` is party i+1's ``with_prev``).

**The dealer (semi2k).** The dealer is its own process (party id ``dealer``). It draws a
seed for every party and sends it in its hello; it then runs the very same program with
placeholder (zero) inputs, in "dealer view": ``dealer_random_shares`` expands all N parties'
streams to get the dealer's value, ``deal_shares`` sends the last party the correction
``value - sum of the first N-1 parties' PRG shares`` (XOR for ``xor=True``). Every dealer value
is a function of the dealer's own randomness only (Beaver triples, truncation masks, AND
triples, random bits), so the dealer's placeholders never reach what it sends. **What the
dealer learns:** nothing about any input, share or output: it receives only the parties'
hellos (a digest of the public program, which it knows anyway). **What it sends:** the seeds
(one per party) and the corrections to the last party, exactly the ``dealer`` bytes of the
cost report; it sends them ahead of need (offline traffic, no round trip). The last party
learns only corrections, each masked by the other parties' PRG shares.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import pathlib
import struct
import threading
import time
import tomllib

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from secjax.errors import SecjaxError
from secjax.ring import Ring
from secjax.runtime import prg as prg_module
from secjax.runtime.base import Runtime
from secjax.runtime.comm import Comm
from secjax.runtime.cost import CostLog
from secjax.runtime.kernels import CacheStats, Kernel, KernelCache

DEALER = "dealer"
DEFAULT_TIMEOUT = 60.0
MAGIC = b"SJX1"
HEADER = struct.Struct("<4sBBQQBB")   # magic, kind, sender, step, seq, dtype code, ndim
DIM = struct.Struct("<Q")
MAX_NDIM = 32
KIND_HELLO, KIND_DATA, KIND_ABORT = 1, 2, 3
_KIND_NAMES = {KIND_HELLO: "hello", KIND_DATA: "data", KIND_ABORT: "abort"}
DTYPES = [np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64,
                                np.int8, np.int16, np.int32, np.int64, np.bool_)]
_DEALER_WIRE_ID = 255
_HELLO_BYTES = 64  # program digest (32) + link seed (32)


# -- errors --------------------------------------------------------------------------------
class NetworkError(SecjaxError):
    """A networked secure computation could not go on."""


class PeerTimeout(NetworkError):
    """A peer sent nothing within the timeout: it died, hangs, or never connected."""


class PeerAborted(NetworkError):
    """A peer stopped with an error and told the others."""


class MalformedMessage(NetworkError):
    """A message whose framing or contents are not what the protocol expects."""


class ProgramMismatch(NetworkError):
    """The parties are not running the same program (jaxpr, config or public inputs)."""


# -- cluster configuration -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Node:
    name: str            # "0", "1", ..., or "dealer"
    address: str         # a ZeroMQ endpoint, e.g. "tcp://10.0.0.5:5700"
    public_key: bytes    # CURVE public key, Z85 (40 characters)


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Who takes part and how to reach them: a cluster TOML file (see ``docs/network.md``)."""

    nodes: dict[str, Node]
    protocol: str = "aby3"
    ring_bits: int = 64
    frac_bits: int = 18
    input_party: int = 0
    output_party: int = 0
    timeout: float = DEFAULT_TIMEOUT
    path: pathlib.Path | None = None

    @property
    def n_parties(self) -> int:
        return sum(1 for name in self.nodes if name != DEALER)

    @property
    def has_dealer(self) -> bool:
        return DEALER in self.nodes

    def node(self, party) -> Node:
        return self.nodes[_name(party)]

    def default_key_path(self, party) -> pathlib.Path:
        base = self.path.parent if self.path is not None else pathlib.Path(".")
        return base / f"{_name(party)}.key_secret"


def _name(party) -> str:
    return str(party)


def load_cluster(path) -> Cluster:
    """Read and validate a cluster TOML file."""
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        data = tomllib.load(f)
    parties = data.get("parties")
    if not isinstance(parties, dict) or not parties:
        raise NetworkError(f"{path}: no [parties.N] tables")
    nodes = {}
    for name, entry in parties.items():
        try:
            key = entry["public_key"].encode("ascii")
            address = entry["address"]
        except (KeyError, TypeError, AttributeError):
            raise NetworkError(f"{path}: [parties.{name}] needs address and public_key") from None
        if len(key) != 40:
            raise NetworkError(f"{path}: [parties.{name}] public_key is not a 40-character "
                               "Z85 CURVE key")
        nodes[name] = Node(name, address, key)
    n = sum(1 for name in nodes if name != DEALER)
    if sorted(k for k in nodes if k != DEALER) != sorted(str(i) for i in range(n)):
        raise NetworkError(f"{path}: parties must be named 0..{n - 1} (and optionally dealer)")
    keys = [node.public_key for node in nodes.values()]
    if len(set(keys)) != len(keys):
        raise NetworkError(f"{path}: two parties share a public key")
    options = {k: data[k] for k in ("protocol", "ring_bits", "frac_bits", "input_party",
                                    "output_party", "timeout") if k in data}
    cluster = Cluster(nodes, path=path, **options)
    if cluster.protocol == "semi2k" and not cluster.has_dealer:
        raise NetworkError(f"{path}: semi2k needs a [parties.dealer] table")
    return cluster


def write_cluster(path, nodes: dict[str, Node], **options) -> None:
    """Write a cluster TOML file (``options``: protocol, ring_bits, timeout, ...)."""
    lines = ["# secjax cluster: every party's address and CURVE public key.",
             "# Share this file with every party; keep each *.key_secret with its party only."]
    for key, value in options.items():
        lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
    for name, node in nodes.items():
        lines += ["", f"[parties.{name}]", f'address = "{node.address}"',
                  f'public_key = "{node.public_key.decode("ascii")}"']
    pathlib.Path(path).write_text("\n".join(lines) + "\n")


def keygen(out_dir, n_parties: int, *, protocol: str = "aby3", host: str = "127.0.0.1",
           base_port: int = 5700, dealer: bool | None = None, **options) -> pathlib.Path:
    """CURVE key pairs (``<name>.key`` / ``<name>.key_secret``) and a ``cluster.toml`` for
    ``n_parties`` (plus a dealer for semi2k) at ``tcp://host:base_port+i``."""
    import zmq.auth

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dealer = protocol == "semi2k" if dealer is None else dealer
    names = [str(i) for i in range(n_parties)] + ([DEALER] if dealer else [])
    nodes = {}
    for i, name in enumerate(names):
        public_file, secret_file = zmq.auth.create_certificates(out, name)
        os.chmod(secret_file, 0o600)
        public, _ = zmq.auth.load_certificate(public_file)
        nodes[name] = Node(name, f"tcp://{host}:{base_port + i}", public)
    path = out / "cluster.toml"
    write_cluster(path, nodes, protocol=protocol, **options)
    return path


def load_secret_key(path) -> tuple[bytes, bytes]:
    """``(public, secret)`` Z85 keys from a ``*.key_secret`` file."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(path)
    if secret is None:
        raise NetworkError(f"{path} holds no secret key")
    return public, secret


# -- framing -------------------------------------------------------------------------------
def _wire_id(name: str) -> int:
    return _DEALER_WIRE_ID if name == DEALER else int(name)


def encode_header(kind: int, sender: str, step: int, seq: int, dtype, shape) -> bytes:
    dtype = np.dtype(dtype)
    if dtype not in DTYPES:
        raise NetworkError(f"cannot send dtype {dtype}")
    shape = tuple(int(d) for d in shape)
    return (HEADER.pack(MAGIC, kind, _wire_id(sender), step, seq, DTYPES.index(dtype),
                        len(shape)) + b"".join(DIM.pack(d) for d in shape))


@dataclasses.dataclass(frozen=True)
class Message:
    kind: int
    sender: int
    step: int
    seq: int
    dtype: np.dtype
    shape: tuple[int, ...]
    payload: bytes


def decode_message(frames, origin: str) -> Message:
    """Parse and check a received multipart message; ``origin`` names the peer for errors."""
    if len(frames) != 2:
        raise MalformedMessage(f"message from {origin}: {len(frames)} frames, expected 2")
    header, payload = bytes(frames[0]), frames[1]
    if len(header) < HEADER.size:
        raise MalformedMessage(f"message from {origin}: truncated header ({len(header)} bytes)")
    magic, kind, sender, step, seq, code, ndim = HEADER.unpack_from(header)
    if magic != MAGIC:
        raise MalformedMessage(f"message from {origin}: bad magic {magic!r}")
    if kind not in _KIND_NAMES:
        raise MalformedMessage(f"message from {origin}: unknown kind {kind}")
    if code >= len(DTYPES):
        raise MalformedMessage(f"message from {origin}: unknown dtype code {code}")
    if ndim > MAX_NDIM or len(header) != HEADER.size + ndim * DIM.size:
        raise MalformedMessage(f"message from {origin}: header of {len(header)} bytes does not "
                               f"match {ndim} dimensions")
    shape = tuple(DIM.unpack_from(header, HEADER.size + i * DIM.size)[0] for i in range(ndim))
    dtype = DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(payload) != expected:
        raise MalformedMessage(f"message from {origin}: payload of {len(payload)} bytes, the "
                               f"header announces {expected} ({dtype}{list(shape)})")
    return Message(kind, sender, step, seq, dtype, shape, bytes(payload))


# -- transport -------------------------------------------------------------------------------
@dataclasses.dataclass
class WireStats:
    """What this node put on the wire (application level; CURVE and ZMTP add their own)."""

    payload: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    header: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    messages: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    handshake: int = 0   # hello messages, header and payload

    def total(self, what: str = "payload") -> int:
        return sum(getattr(self, what).values())


class Transport:
    """This node's sockets: one CURVE-server PULL it binds, one CURVE-client PUSH per peer."""

    def __init__(self, cluster: Cluster, me, secret_key_file=None, *, keys=None,
                 timeout: float | None = None, peers=None):
        import zmq
        from zmq.auth.thread import ThreadAuthenticator

        self.cluster = cluster
        self.me = _name(me)
        if self.me not in cluster.nodes:
            raise NetworkError(f"party {self.me!r} is not in the cluster config")
        self.timeout = cluster.timeout if timeout is None else float(timeout)
        if keys is None:
            keys = load_secret_key(secret_key_file or cluster.default_key_path(self.me))
        public, secret = keys
        if public != cluster.nodes[self.me].public_key:
            raise NetworkError(f"the key given to party {self.me} is not the public key the "
                               "cluster config lists for it")
        self.peers = [n for n in cluster.nodes if n != self.me] if peers is None else list(peers)
        self.stats = WireStats()
        self.rejected = 0
        self._lock = threading.Lock()
        self._inbox = {name: collections.deque() for name in cluster.nodes}
        self._recv_seq = collections.Counter()
        self._send_seq = collections.Counter()
        by_key = {node.public_key: name for name, node in cluster.nodes.items()}
        transport = self

        class _Keys:
            def callback(self, domain, key):
                ok = key in by_key and by_key[key] != transport.me
                if not ok:
                    with transport._lock:
                        transport.rejected += 1
                return ok

        class _Authenticator(ThreadAuthenticator):
            def curve_user_id(self, client_public_key):
                from zmq.utils import z85
                return by_key[z85.encode(client_public_key)]

        self._zmq = zmq
        self.context = zmq.Context()
        self.auth = _Authenticator(self.context)
        self.auth.start()
        self.auth.configure_curve_callback("secjax", credentials_provider=_Keys())
        self.pull = self.context.socket(zmq.PULL)
        self.pull.curve_secretkey, self.pull.curve_publickey = secret, public
        self.pull.curve_server = True
        self.pull.zap_domain = b"secjax"
        self.pull.rcvhwm = 0
        self.pull.linger = 0
        try:
            self.pull.bind(cluster.nodes[self.me].address)
        except zmq.ZMQError as exc:
            self.close()
            raise NetworkError(f"party {self.me} cannot listen on "
                               f"{cluster.nodes[self.me].address}: {exc}") from None
        self.push = {}
        for name in self.peers:
            sock = self.context.socket(zmq.PUSH)
            sock.curve_secretkey, sock.curve_publickey = secret, public
            sock.curve_serverkey = cluster.nodes[name].public_key
            sock.sndhwm = 0            # never block a send: SPMD steps send before receiving
            sock.linger = int(self.timeout * 1000)   # deliver what is queued before exiting
            sock.connect(cluster.nodes[name].address)
            self.push[name] = sock

    # -- sending ---------------------------------------------------------------------------
    def send(self, dst: str, kind: int, step: int, array) -> None:
        array = np.asarray(array, order="C")
        seq = self._send_seq[dst]
        self._send_seq[dst] += 1
        header = encode_header(kind, self.me, step, seq, array.dtype, array.shape)
        self.push[dst].send_multipart([header, array.tobytes()], copy=False)
        if kind == KIND_DATA:
            self.stats.payload[dst] += array.nbytes
            self.stats.header[dst] += len(header)
            self.stats.messages[dst] += 1
        else:
            self.stats.handshake += len(header) + array.nbytes

    def abort(self) -> None:
        """Tell every peer this node stopped (best effort, never blocks)."""
        for dst in self.peers:
            try:
                header = encode_header(KIND_ABORT, self.me, 0, 0, np.uint8, (0,))
                self.push[dst].send_multipart([header, b""], flags=self._zmq.NOBLOCK)
                self.push[dst].linger = 1000
            except Exception:  # noqa: BLE001 - aborting anyway
                pass

    # -- receiving -------------------------------------------------------------------------
    def recv(self, src: str, kind: int, step: int | None, dtype, shape, *, what: str = ""):
        """The next message from ``src``: checked against the expected kind, step, sequence
        number, dtype and shape. Raises within ``timeout`` seconds if none comes."""
        deadline = time.monotonic() + self.timeout
        queue = self._inbox[src]
        while not queue:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PeerTimeout(self._timeout_text(src, step, what))
            if self.pull.poll(int(left * 1000) + 1):
                self._receive_one(what)
        msg = queue.popleft()
        origin = f"party {src}"
        seq = self._recv_seq[src]
        self._recv_seq[src] += 1
        problems = []
        if msg.kind != kind:
            problems.append(f"kind {_KIND_NAMES[msg.kind]}, expected {_KIND_NAMES[kind]}")
        if msg.seq != seq:
            problems.append(f"sequence number {msg.seq}, expected {seq}")
        if step is not None and msg.step != step:
            problems.append(f"step {msg.step}, expected {step} (the parties diverged)")
        if msg.dtype != np.dtype(dtype) or msg.shape != tuple(shape):
            problems.append(f"{msg.dtype}{list(msg.shape)}, expected "
                            f"{np.dtype(dtype)}{list(shape)}")
        if problems:
            raise MalformedMessage(f"message from {origin}{' for ' + what if what else ''}: "
                                   + "; ".join(problems))
        return np.frombuffer(msg.payload, msg.dtype).reshape(msg.shape)

    def _receive_one(self, what: str = "") -> None:
        frames = self.pull.recv_multipart(copy=False)
        user = frames[0].get("User-Id") if frames else None
        if user not in self._inbox or user == self.me:
            raise MalformedMessage(f"message from an unauthenticated peer ({user!r})")
        msg = decode_message(frames, f"party {user}")
        if msg.sender != _wire_id(user):
            raise MalformedMessage(f"message from party {user} claims to come from "
                                   f"sender id {msg.sender}")
        if msg.kind == KIND_ABORT:
            raise PeerAborted(f"party {user} stopped with an error (party {self.me} was "
                              f"waiting{' for ' + what if what else ''})")
        self._inbox[user].append(msg)

    def _timeout_text(self, src, step, what) -> str:
        text = (f"party {self.me}: no message from party {src} "
                f"({self.cluster.nodes[src].address}) within {self.timeout:g} s")
        if step is not None:
            text += f" at step {step}"
        if what:
            text += f" ({what})"
        text += ": it stopped, hangs, or never connected"
        if self.rejected:
            text += (f"; {self.rejected} connection attempt(s) with a CURVE key not in the "
                     "cluster config were rejected")
        return text

    def close(self) -> None:
        for sock in getattr(self, "push", {}).values():
            sock.close()
        if getattr(self, "pull", None) is not None:
            self.pull.close(linger=0)
        if getattr(self, "auth", None) is not None:
            self.auth.stop()
        self.context.term()


# -- randomness --------------------------------------------------------------------------------
def chacha20_keystream(seed: bytes, first_block: int, n_blocks: int, stream: int = 0):
    """ChaCha20 (RFC 8439) keystream words in numpy: the same function as
    :func:`secjax.runtime.prg.chacha20_block` (tests check they agree), usable inside a JAX
    host callback, where calling back into JAX could deadlock."""
    if first_block + n_blocks > 2**32:
        raise OverflowError("ChaCha20 block counter exhausted")
    key = np.frombuffer(seed, "<u4").astype(np.uint32)
    nonce = np.frombuffer(stream.to_bytes(12, "little"), "<u4").astype(np.uint32)
    counters = (first_block + np.arange(n_blocks, dtype=np.uint64)).astype(np.uint32)
    init = ([np.full(n_blocks, c, np.uint32) for c in prg_module._CONSTANTS]
            + [np.full(n_blocks, k, np.uint32) for k in key] + [counters]
            + [np.full(n_blocks, w, np.uint32) for w in nonce])
    state = [word.copy() for word in init]
    with np.errstate(over="ignore"):
        for _ in range(10):
            for quarter in prg_module._COLUMNS + prg_module._DIAGONALS:
                prg_module._quarter_round(state, *quarter)
        return np.stack([f + i for f, i in zip(state, init)], axis=-1).reshape(-1)


class _Stream:
    """A ChaCha20 keystream under a 32-byte seed, read out in order as arrays of any fixed
    width dtype (little-endian bytes); no keystream byte is ever used twice."""

    _CHUNK_BLOCKS = 1024

    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise ValueError("stream seed must be 32 bytes")
        self._seed = bytes(seed)
        self._next_block = 0
        self._buffer = b""

    def draw(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if len(self._buffer) < n:
            blocks = max(self._CHUNK_BLOCKS, -(-(n - len(self._buffer)) // 64))
            words = chacha20_keystream(self._seed, self._next_block, blocks)
            self._next_block += blocks
            self._buffer += words.astype("<u4").tobytes()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        if dtype == np.bool_:
            return (np.frombuffer(data, np.uint8) & 1).astype(np.bool_).reshape(shape)
        return np.frombuffer(data, dtype.newbyteorder("<")).astype(dtype).reshape(shape)


# -- the Comm of one process -------------------------------------------------------------
class NetworkComm(Comm):
    """The Comm of one party process (or of the dealer): arrays carry a party axis of size 1
    holding this party's own slice; exchanges are real messages.

    Steps are jit-compiled like emulation's kernels; every message and every draw of
    randomness is an ordered ``io_callback`` into this process, so they happen in program
    order when the kernel runs. Which messages a party sends or receives is static (it
    depends on the party id only), so each process compiles only its own part.
    """

    def __init__(self, runtime: "NetworkRuntime"):
        super().__init__(runtime.n_parties, runtime.ring)
        self._rt = runtime
        self._dealer = runtime.is_dealer
        self._me = runtime.index

    # -- host side ---------------------------------------------------------------------------
    def _callback(self, fn, result, *args):
        """Run ``fn(*numpy args)`` on the host, in order; its errors are kept for the runtime
        to raise as they are (not wrapped in an XLA error).

        Arrays cross the host boundary as bytes (uint8, one trailing axis of ``itemsize``):
        the callback may run on an XLA thread where JAX's 64-bit mode (enabled for secjax in
        the calling thread only) is off, and JAX would then turn uint64 results into uint32.
        """
        runtime = self._rt
        dtypes = [np.dtype(a.dtype) for a in args]
        shapes = [tuple(a.shape) for a in args]

        def host(*xs):
            try:
                values = [_from_host_bytes(x, d, sh) for x, d, sh in zip(xs, dtypes, shapes)]
                return _host_bytes(np.asarray(fn(*values), result.dtype))
            except BaseException as exc:
                runtime.error = exc
                raise
        as_bytes = jax.ShapeDtypeStruct(_bytes_shape(result.shape, result.dtype), np.uint8)
        out = io_callback(host, as_bytes, *[_device_bytes(a) for a in args], ordered=True)
        return _from_device_bytes(out, result.dtype)

    def _what(self) -> str:
        return f"{self._op} under {self._rt.label}"

    def _check(self, x):
        if x.shape[:1] != (1,):
            raise NetworkError(f"a party process holds one slice (party axis of size 1); "
                               f"got shape {tuple(x.shape)} in {self._op}")

    def _exchange(self, x, sends, recvs, *, stack=False):
        """Send this party's slice of ``x`` to every party in ``sends``, then receive from
        every party in ``recvs`` (as ``x``'s slice shape and dtype)."""
        rt, what = self._rt, self._what()
        result = jax.ShapeDtypeStruct((1, len(recvs), *x.shape[1:]) if stack else x.shape,
                                      x.dtype)
        if not recvs:
            result = jax.ShapeDtypeStruct((), np.uint8)

        def host(xv):
            for dst in sends:
                rt.transport.send(_name(dst), KIND_DATA, rt.step, xv[0])
            got = [rt.transport.recv(_name(src), KIND_DATA, rt.step, xv.dtype, xv.shape[1:],
                                     what=what) for src in recvs]
            if not recvs:
                return np.zeros((), np.uint8)
            return np.stack(got)[None] if stack else got[0][None].copy()
        return self._callback(host, result, x)

    def _draw(self, stream_of, shape, dtype):
        """This party's next draw from the stream ``stream_of(runtime)``, party axis first."""
        rt = self._rt

        def host():
            return stream_of(rt).draw(shape, dtype)[None]
        return self._callback(host, jax.ShapeDtypeStruct((1, *shape), dtype))

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
        parts = [x if p == self._me else got[:, others.index(p)]
                 for p in range(self.n_parties)]
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
        return (self._draw(lambda rt: rt.with_next, shape, dtype),
                self._draw(lambda rt: rt.with_prev, shape, dtype))

    def dealer_random_shares(self, shape, dtype, *, xor=False):
        self._need_dealer()
        shape = tuple(shape)
        if self._dealer:
            def host():
                shares = np.stack([s.draw(shape, dtype) for s in self._rt.dealer_streams])
                return _combine(shares, xor)
            value = self._callback(host, jax.ShapeDtypeStruct(shape, dtype))
            return value, jnp.zeros((1, *shape), dtype)
        return jnp.zeros(shape, dtype), self._draw(lambda rt: rt.dealer_stream, shape, dtype)

    def deal_shares(self, value, *, xor=False):
        self._need_dealer()
        self._record((0,) * self.n_parties, dealer=self._payload(value[None]), offline=True)
        shape, dtype, last = tuple(value.shape), value.dtype, self.n_parties - 1
        rt, what = self._rt, f"dealer correction in {self._what()}"
        if self._dealer:
            def host(v):
                prg = np.stack([s.draw(shape, dtype) for s in rt.dealer_streams[:last]])
                correction = (v ^ _combine(prg, True)) if xor else v - _combine(prg, False)
                rt.transport.send(_name(last), KIND_DATA, rt.step, correction)
                return np.zeros((), np.uint8)
            self._callback(host, jax.ShapeDtypeStruct((), np.uint8), value)
            return jnp.zeros((1, *shape), dtype)
        if self._me < last:
            return self._draw(lambda r: r.dealer_stream, shape, dtype)

        def receive():
            got = rt.transport.recv(DEALER, KIND_DATA, rt.step, dtype, shape, what=what)
            return got[None].copy()
        return self._callback(receive, jax.ShapeDtypeStruct((1, *shape), dtype))

    def _need_dealer(self):
        if not self._rt.cluster.has_dealer:
            raise NetworkError(f"{self._op} needs a dealer, and the cluster config has no "
                               "[parties.dealer]")


def _bytes_shape(shape, dtype) -> tuple:
    size = np.dtype(dtype).itemsize
    return tuple(shape) + ((size,) if size > 1 else ())


def _device_bytes(x):
    x = jnp.asarray(x)
    if x.dtype == np.bool_:
        return x.astype(np.uint8)
    return x if x.dtype.itemsize == 1 and x.dtype == np.uint8 else \
        jax.lax.bitcast_convert_type(x, np.uint8)


def _from_device_bytes(x, dtype):
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return x.astype(np.bool_)
    return x if dtype == np.uint8 else jax.lax.bitcast_convert_type(x, dtype)


def _host_bytes(x: np.ndarray) -> np.ndarray:
    x = np.array(x, order="C", copy=False) if x.flags.c_contiguous else np.array(x, order="C")
    if x.dtype == np.bool_:
        return x.astype(np.uint8)
    return x.view(np.uint8).reshape(_bytes_shape(x.shape, x.dtype))


def _from_host_bytes(x, dtype, shape) -> np.ndarray:
    x = np.array(x, np.uint8, order="C")
    if np.dtype(dtype) == np.bool_:
        return x.astype(np.bool_).reshape(shape)
    return x.view(dtype).reshape(shape)


def _combine(shares: np.ndarray, xor: bool) -> np.ndarray:
    if xor:
        return np.bitwise_xor.reduce(shares, axis=0)
    return np.sum(shares, axis=0, dtype=shares.dtype)


class NetworkRuntime(Runtime):
    """Runs protocol steps in one party process (the :class:`Emulator` interface).

    Connects to every peer on construction, exchanges hellos (checking that everyone runs the
    program with digest ``digest``) and the link seeds. Steps run eagerly: a step that sends
    and receives cannot be one compiled kernel. Every step's exchanges are recorded into
    ``cost`` exactly as in emulation; ``transport.stats`` counts what actually went out.
    """

    def __init__(self, cluster: Cluster, party, ring: Ring, *, digest: bytes,
                 secret_key_file=None, keys=None, timeout: float | None = None):
        self.cluster = cluster
        self.ring = ring
        self.n_parties = cluster.n_parties
        self.name = _name(party)
        self.is_dealer = self.name == DEALER
        self.index = self.n_parties if self.is_dealer else int(self.name)
        self.cost = CostLog(self.n_parties)
        self.compile_seconds = 0.0
        self.kernels = KernelCache(None)
        self.stats = CacheStats()
        self.abstract = False
        self.step = 0
        self.label = "(setup)"
        self.error: BaseException | None = None
        self.transport = Transport(cluster, self.name, secret_key_file, keys=keys,
                                   timeout=timeout)
        try:
            self._handshake(digest)
        except BaseException:
            self.close(failed=True)
            raise

    def _links(self) -> dict[str, bytes]:
        """The seeds this node draws and sends: to the next party, or (dealer) to everyone."""
        if self.is_dealer:
            return {str(i): os.urandom(32) for i in range(self.n_parties)}
        return {str((self.index + 1) % self.n_parties): os.urandom(32)}

    def _handshake(self, digest: bytes) -> None:
        if len(digest) != 32:
            raise ValueError("program digest must be 32 bytes")
        transport = self.transport
        own = self._links()
        for peer in transport.peers:
            hello = np.frombuffer(digest + own.get(peer, bytes(32)), np.uint8)
            transport.send(peer, KIND_HELLO, 0, hello)
        received = {}
        for peer in transport.peers:
            got = transport.recv(peer, KIND_HELLO, 0, np.uint8, (_HELLO_BYTES,),
                                 what="hello: connecting")
            if got[:32].tobytes() != digest:
                raise ProgramMismatch(f"party {peer} runs a different program (jaxpr, config, "
                                      f"public inputs or input shapes) than party {self.name}")
            received[peer] = got[32:].tobytes()
        if self.is_dealer:
            self.dealer_streams = [_Stream(own[str(i)]) for i in range(self.n_parties)]
            return
        n, i = self.n_parties, self.index
        self.private = _Stream(os.urandom(32))
        self.with_next = _Stream(own[str((i + 1) % n)])
        self.with_prev = _Stream(received[str((i - 1) % n)])
        if self.cluster.has_dealer:
            self.dealer_stream = _Stream(received[DEALER])

    def holds(self, party: int) -> bool:
        """Whether this process holds party ``party``'s private data."""
        return not self.is_dealer and party == self.index

    def run(self, step, *arrays, cost_of=None, elementwise=None, whole=(), on_host=False,
            **static):
        """Run ``step(comm, *arrays, **static)`` as this party; returns its outputs.

        Compiled once per (step, static arguments, input shapes) and kept in memory only (its
        messages are host callbacks into this process, which no executable on disk can hold);
        ``elementwise`` steps run at their own shape, so that what is sent is what the cost
        report counts. The exchanges recorded while tracing are added to ``cost`` at every
        call. The kernel runs to completion before the next step starts (messages carry the
        step number).
        """
        if cost_of is not None:
            raise NetworkError("party processes run the real protocol steps only")
        key = (step, self.ring, tuple(sorted(static.items())),
               tuple((tuple(a.shape), np.dtype(a.dtype).str) for a in arrays))
        self.label = getattr(self.cost, "_label", "?")
        started = time.perf_counter()
        kernel = self.kernels.get(key, lambda: None, False, self.stats,
                                  lambda: self._trace(step, arrays, static))
        if kernel.compiled is None:
            self.kernels.finish(kernel, self.stats)
        self.compile_seconds += time.perf_counter() - started
        self.cost.add(kernel.exchanges)
        self.step += 1
        self.error = None
        try:
            return jax.block_until_ready(kernel.compiled(*arrays))
        except Exception:
            if self.error is not None:   # the host callback's own error, not XLA's wrapper
                error, self.error = self.error, None
                raise error from None
            raise

    def _trace(self, step, arrays, static) -> Kernel:
        comms = []

        def fn(*xs):
            comm = NetworkComm(self)
            comms.append(comm)
            return step(comm, *xs, **static)
        avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays]
        traced = jax.jit(fn).trace(*avals)
        return Kernel(tuple(comms[0].exchanges), traced.out_info, traced)

    def close(self, *, failed: bool = False) -> None:
        if failed:
            self.transport.abort()
        self.transport.close()


def program_digest(*parts) -> bytes:
    """SHA-256 over the parts' reprs and array bytes: what every party must agree on."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, (np.ndarray, jax.Array)):
            arr = np.asarray(part)
            h.update(repr((arr.dtype.str, arr.shape)).encode())
            h.update(arr.tobytes())
        else:
            h.update(repr(part).encode())
        h.update(b"\x00")
    return h.digest()
