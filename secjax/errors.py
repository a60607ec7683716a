"""Errors secjax raises at trace time, each naming the primitive, the reason and the source."""

from __future__ import annotations


class SecjaxError(Exception):
    """Base class of every error secjax raises about a user's program or inputs."""


class UnsupportedError(SecjaxError):
    """A primitive, or a use of one, that secjax cannot compute securely."""


class EncodingError(SecjaxError, OverflowError):
    """A value or dtype that has no faithful encoding in the ring."""


def describe(primitive: str, reason: str, source: str | None) -> str:
    """One-line message: what failed, why, and where in the user's code."""
    where = f" at {source}" if source else ""
    return f"secjax cannot compute `{primitive}`{where}: {reason}"


class RangeError(SecjaxError, ArithmeticError):
    """A value past the range within which a protocol step (a truncation) is correct."""


class RangeWarning(UserWarning):
    """A configuration whose ring leaves ordinary values little room (see ``frac_bits``)."""
