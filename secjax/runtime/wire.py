"""The message format between parties, the dealer and clients.

A message is two ZeroMQ frames: a header and the raw array bytes. The header is
``magic "SJX2", kind, sender, session, query, step, sequence number, dtype code, ndim`` and
``ndim`` 64-bit dimensions, little-endian (:data:`HEADER`):

- ``session``: fixed when the nodes meet (a hash of every node's random hello nonce); a
  message of another session comes from a process left over from an earlier run and is
  rejected.
- ``query``: the query (one evaluation of the program) the message belongs to; messages of
  an earlier, failed query are dropped, so a failure cannot leak into the next query.
- ``step`` and ``seq``: the protocol step and the per-sender, per-query sequence number; the
  receiver knows what it expects (the steps are SPMD) and checks both, the dtype, the shape
  and the payload length.

Sizes are computed with Python integers (no fixed-width wraparound). Anything unexpected
raises :class:`~secjax.runtime.faults.MalformedMessage`.
"""

from __future__ import annotations

import dataclasses
import math
import struct

import numpy as np

from secjax.runtime.faults import MalformedMessage, NetworkError

MAGIC = b"SJX2"
HEADER = struct.Struct("<4sBBQQQQBB")  # magic, kind, sender, session, query, step, seq, dtype, ndim
DIM = struct.Struct("<Q")
MAX_NDIM = 32
MAX_HEADER = HEADER.size + MAX_NDIM * DIM.size

# kinds: HELLO opens a session; DATA is a protocol message; ABORT says the sender stopped;
# START (leader to every node) begins a query for a client; DONE (party to dealer) ends one;
# QUERY (client to party) carries a client's input pieces; RESULT / FAILED answer it.
KIND_HELLO, KIND_DATA, KIND_ABORT, KIND_START, KIND_DONE, KIND_QUERY, KIND_RESULT, KIND_FAILED = (
    range(1, 9)
)
KIND_NAMES = {
    KIND_HELLO: "hello",
    KIND_DATA: "data",
    KIND_ABORT: "abort",
    KIND_START: "start",
    KIND_DONE: "done",
    KIND_QUERY: "query",
    KIND_RESULT: "result",
    KIND_FAILED: "failed",
}
DTYPES = [
    np.dtype(t)
    for t in (
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.bool_,
    )
]
DEALER = "dealer"
DEALER_WIRE_ID = 255
CLIENT_WIRE_ID = 254


def wire_id(name: str) -> int:
    """The sender byte of a node: its party number, or the dealer's or any client's code."""
    if name == DEALER:
        return DEALER_WIRE_ID
    return int(name) if name.isdigit() else CLIENT_WIRE_ID


def nbytes(dtype, shape) -> int:
    """Bytes of an array of ``dtype`` and ``shape`` (Python integers: never wraps)."""
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


def encode_header(
    kind: int, sender: str, session: int, query: int, step: int, seq: int, dtype, shape
) -> bytes:
    dtype = np.dtype(dtype)
    if dtype not in DTYPES:
        raise NetworkError(f"cannot send dtype {dtype}")
    shape = tuple(int(d) for d in shape)
    if len(shape) > MAX_NDIM:
        raise NetworkError(f"cannot send an array of {len(shape)} dimensions")
    return HEADER.pack(
        MAGIC, kind, wire_id(sender), session, query, step, seq, DTYPES.index(dtype), len(shape)
    ) + b"".join(DIM.pack(d) for d in shape)


@dataclasses.dataclass(frozen=True)
class Message:
    kind: int
    sender: int
    session: int
    query: int
    step: int
    seq: int
    dtype: np.dtype
    shape: tuple[int, ...]
    data: memoryview  # the received frame's memory, not copied

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]

    @property
    def payload(self) -> bytes:
        return bytes(self.data)

    def array(self) -> np.ndarray:
        """The payload as an array (read-only, over the received frame's memory)."""
        return np.frombuffer(self.data, self.dtype).reshape(self.shape)


def decode_message(frames, origin: str) -> Message:
    """Parse and check a received two-frame message; ``origin`` names the peer for errors."""
    if len(frames) != 2:
        raise MalformedMessage(f"message from {origin}: {len(frames)} frames, expected 2")
    header, payload = bytes(frames[0]), frames[1]
    payload = payload.buffer if hasattr(payload, "buffer") else memoryview(payload)
    if len(header) < HEADER.size:
        raise MalformedMessage(f"message from {origin}: truncated header ({len(header)} bytes)")
    magic, kind, sender, session, query, step, seq, code, ndim = HEADER.unpack_from(header)
    if magic != MAGIC:
        raise MalformedMessage(f"message from {origin}: bad magic {magic!r}")
    if kind not in KIND_NAMES:
        raise MalformedMessage(f"message from {origin}: unknown kind {kind}")
    if code >= len(DTYPES):
        raise MalformedMessage(f"message from {origin}: unknown dtype code {code}")
    if ndim > MAX_NDIM or len(header) != HEADER.size + ndim * DIM.size:
        raise MalformedMessage(
            f"message from {origin}: header of {len(header)} bytes does not match {ndim} dimensions"
        )
    shape = tuple(DIM.unpack_from(header, HEADER.size + i * DIM.size)[0] for i in range(ndim))
    dtype = DTYPES[code]
    expected = nbytes(dtype, shape)
    if payload.nbytes != expected:
        raise MalformedMessage(
            f"message from {origin}: payload of {payload.nbytes} bytes, the "
            f"header announces {expected} ({dtype}{list(shape)})"
        )
    return Message(kind, sender, session, query, step, seq, dtype, shape, payload.cast("B"))
