"""Secret-sharing protocols, looked up by name."""

from secjax.protocols.aby3 import Aby3
from secjax.protocols.base import Bilinear, Local, Protocol
from secjax.protocols.plain import Plain
from secjax.protocols.semi2k import Semi2k

PROTOCOLS: dict[str, type[Protocol]] = {"plain": Plain, "semi2k": Semi2k, "aby3": Aby3}

__all__ = ["Aby3", "Bilinear", "Local", "Plain", "Protocol", "PROTOCOLS", "Semi2k"]
