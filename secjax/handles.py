"""Secret values that outlive a call: handles to their shares.

A :class:`Handle` is what a secure call returns for an output it keeps secret, and what
:func:`secjax.share` returns for a value shared ahead of time (a model's weights, shared
once by their owner). A later call takes it as an ordinary argument and uses its shares as
they are: no sharing and no communication for that argument.

A handle holds:

- ``shares``: the share array of the parties this process holds (the emulator holds every
  party's, so its layout is the protocol's full share layout; a party process would hold its
  own slice, a party axis of size 1), or a ``jax.ShapeDtypeStruct`` for an *abstract* handle,
  which only :meth:`SecureFunction.cost` takes;
- ``shape`` and ``dtype``: the logical array it stands for (its ring encoding: ``frac_bits``
  fractional bits for floats, 0 for integers and booleans, as for any secret);
- ``domain``: the :class:`Domain` the shares belong to: protocol, number of parties, ring,
  share layout, which parties' shares are held here and the party set that holds the rest.
  A call whose own domain differs refuses the handle with a :class:`~secjax.SecjaxError`
  that names the argument and the difference: shares of one protocol, ring or party set mean
  nothing to another.

Handles never cross a trust boundary by themselves: in a party process each handle is that
party's own shares, and the party set (``Runtime.party_set``) says which processes hold the
matching shares.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

# How shares are laid out: ``"shares"``, every held party's real protocol shares;
# ``"values"``, the emulator's ideal mode, which holds each secret as its ring value.
LAYOUTS = ("shares", "values")


@dataclasses.dataclass(frozen=True)
class Domain:
    """Where a handle's shares mean something.

    ``holders``: the parties whose shares the handle holds (the emulator: all of them; a party
    process: its own). ``party_set``: which set of processes holds the shares
    (``Runtime.party_set``; ``"emulator"`` for the in-process emulator, where any call of the
    same protocol, parties, ring and layout can use them).
    """

    protocol: str
    parties: int
    ring_bits: int
    frac_bits: int
    layout: str
    holders: tuple[int, ...]
    party_set: str

    def differences(self, other: Domain) -> list[str]:
        """What differs from ``other``, one phrase per field, e.g. ``"protocol aby3, not
        semi2k"`` (empty when the two match)."""
        out = []
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            if mine != theirs:
                out.append(f"{field.name.replace('_', ' ')} {_show(mine)}, not {_show(theirs)}")
        return out

    def describe(self) -> str:
        return (
            f"{self.protocol}, {self.parties} parties, ring 2^{self.ring_bits} with "
            f"{self.frac_bits} fractional bits, {self.layout} held by "
            f"{'all parties' if len(self.holders) == self.parties else _show(self.holders)}"
            f" in {self.party_set}"
        )


def _show(value) -> str:
    if isinstance(value, tuple):
        return "parties " + ", ".join(map(str, value))
    return str(value)


@dataclasses.dataclass(frozen=True, eq=False)
class Handle:
    """A secret array that stays shared between calls (see the module docstring)."""

    shares: Any
    shape: tuple[int, ...]
    dtype: np.dtype
    domain: Domain

    @property
    def abstract(self) -> bool:
        """Whether this handle has shapes only (from sharing ``jax.ShapeDtypeStruct``
        placeholders): it can be costed, not run."""
        return isinstance(self.shares, jax.ShapeDtypeStruct)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __repr__(self) -> str:
        kind = "abstract " if self.abstract else ""
        dims = ",".join(map(str, self.shape))
        return f"Handle({kind}{self.dtype}[{dims}], {self.domain.describe()})"


def handles_in(tree) -> list[Handle]:
    """The handles among ``tree``'s leaves."""
    return [leaf for leaf in jax.tree.leaves(tree) if isinstance(leaf, Handle)]
