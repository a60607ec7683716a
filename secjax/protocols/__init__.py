"""Secret-sharing protocols, looked up by name."""
from secjax.protocols.base import Bilinear, Local, Protocol
from secjax.protocols.plain import Plain

PROTOCOLS: dict[str, type[Protocol]] = {"plain": Plain}

__all__ = ["Bilinear", "Local", "Protocol", "PROTOCOLS"]
