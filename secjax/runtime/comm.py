"""The interface through which SPMD protocol code talks to the other parties.

Protocol steps are written once, for every party at the same time: "each party holds these
shares, sends this to the next party, adds what it received". A :class:`Comm` carries out those
exchanges and draws the randomness the step needs. In emulation all parties live in one array
with a leading *party axis*; in a network deployment each process holds its own slice only.
The step's code cannot tell which.

Every exchange is recorded (bytes each party sends, rounds) while the step is traced, so the
cost of a step is exact and known before anything runs.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses

import jax
import numpy as np

from secjax.ring import Ring


@dataclasses.dataclass(frozen=True)
class Exchange:
    """One recorded communication: bytes sent by each party (and the dealer), and rounds."""

    op: str
    sent: tuple[int, ...]
    dealer: int
    rounds: int


class Comm(abc.ABC):
    """Messages and randomness for one protocol step, seen from every party at once."""

    def __init__(self, n_parties: int, ring: Ring):
        self.n_parties = n_parties
        self.ring = ring
        self.exchanges: list[Exchange] = []
        self._op = "step"
        self._round_open = False

    # -- bookkeeping -----------------------------------------------------------------------
    @contextlib.contextmanager
    def op(self, name: str):
        """Attribute the exchanges inside to the protocol operation ``name``."""
        outer, self._op = self._op, name
        try:
            yield
        finally:
            self._op = outer

    @contextlib.contextmanager
    def one_round(self):
        """Count every message sent inside as part of a single communication round."""
        if self._round_open:
            yield
            return
        self._round_open = True
        self._round_has_messages = False
        try:
            yield
        finally:
            self._round_open = False

    def _record(self, sent: tuple[int, ...], dealer: int = 0, *, offline: bool = False) -> None:
        rounds = 0 if offline else 1
        if self._round_open:
            rounds = 0 if self._round_has_messages else rounds
            self._round_has_messages = self._round_has_messages or not offline
        self.exchanges.append(Exchange(self._op, sent, dealer, rounds))

    def _payload(self, x) -> int:
        """Bytes of one party's part of ``x``."""
        return int(np.prod(self.local_shape(x), dtype=np.int64)) * np.dtype(x.dtype).itemsize

    # -- the interface protocols use -------------------------------------------------------
    @abc.abstractmethod
    def local_shape(self, x) -> tuple[int, ...]:
        """Shape of one party's part of the party-indexed array ``x``."""

    @abc.abstractmethod
    def party_index(self, like) -> jax.Array:
        """This party's index, as an integer array that broadcasts against ``like``."""

    def broadcast(self, x) -> jax.Array:
        """``x``, a value every party holds alike, with a party axis in front (in a party
        process the axis has one entry, the own slice)."""
        return jax.numpy.broadcast_to(x[None], (self.n_parties, *x.shape))

    def view(self, x, party: int) -> jax.Array:
        """Party ``party``'s slice of the party-indexed ``x`` (no party axis). In emulation
        every slice is present; in a party process only the own slice exists, so this is only
        meaningful at ``party`` itself (elsewhere it is that process's own slice)."""
        return x[party]

    @abc.abstractmethod
    def shift(self, x, offset: int = 1) -> jax.Array:
        """Every party i sends its ``x`` to party i + offset; returns what each received."""

    @abc.abstractmethod
    def all_gather(self, x) -> jax.Array:
        """Every party sends its ``x`` to all others; returns, per party, all n values stacked
        on a new axis just after the party axis, ordered by sender."""

    @abc.abstractmethod
    def send(self, x, src: int, dst: int) -> jax.Array:
        """Party ``src`` sends its ``x`` to party ``dst``; ``dst`` receives it, others get 0."""

    @abc.abstractmethod
    def random(self, shape, dtype) -> jax.Array:
        """Fresh uniform randomness, private to each party."""

    @abc.abstractmethod
    def random_pair(self, shape, dtype) -> tuple[jax.Array, jax.Array]:
        """Randomness from the pairwise PRG seeds: ``(with_next, with_prev)``, where party i's
        ``with_next`` equals party i+1's ``with_prev``. Costs no communication."""

    @abc.abstractmethod
    def dealer_random_shares(
        self, shape, dtype, *, xor: bool = False
    ) -> tuple[jax.Array, jax.Array]:
        """A random value known to the dealer, additively shared among the parties at no
        cost (each share comes from the PRG seed the party shares with the dealer).
        Returns ``(value, shares)``: ``value`` is the dealer's view and has no party axis.
        With ``xor=True`` the shares are XOR shares (binary sharing) of ``value``."""

    @abc.abstractmethod
    def deal_shares(self, value, *, xor: bool = False) -> jax.Array:
        """Additively share a value the dealer computed (no party axis): parties 0..n-2 take
        PRG shares, the dealer sends the last party its correction. Offline traffic: it
        depends on no input and can be sent before the inputs exist. With ``xor=True`` the
        shares are XOR shares (binary sharing) of ``value``."""


def combine(shares, xor: bool):
    """The value that party-indexed ``shares`` hold: their XOR or their sum (numpy arrays on
    the host, JAX arrays inside kernels)."""
    if isinstance(shares, np.ndarray):
        if xor:
            return np.bitwise_xor.reduce(shares, axis=0)
        return np.sum(shares, axis=0, dtype=shares.dtype)
    if xor:
        return jax.lax.reduce(shares, np.zeros((), shares.dtype), jax.lax.bitwise_xor, (0,))
    return jax.numpy.sum(shares, axis=0, dtype=shares.dtype)
