"""What can stop a networked secure computation: the errors of the party runtime."""

from __future__ import annotations

from secjax.errors import SecjaxError


class NetworkError(SecjaxError):
    """A networked secure computation could not go on."""


class PeerTimeout(NetworkError):
    """A peer sent nothing (or took nothing) within the timeout: it died, hangs, or never
    connected."""


class PeerAborted(NetworkError):
    """A peer stopped with an error and told the others."""


class MalformedMessage(NetworkError):
    """A message whose framing or contents are not what the protocol expects, or one from
    another session (a process left over from an earlier run)."""


class ProgramMismatch(NetworkError):
    """The parties (or a client) are not running the same program (jaxpr, config or public
    inputs)."""


class KeyFileError(NetworkError):
    """A secret key file is missing, malformed, or readable by others than its owner."""


class Stopped(Exception):
    """A served node was asked to stop while it waited for the next query (not an error)."""
