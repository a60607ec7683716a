"""The parties' cryptographic PRG: AES-128 in counter mode, on the host, through OpenSSL.

Party processes derive every share, mask and correlated random value from seeds drawn with
``os.urandom`` and exchanged over the encrypted links (``jax.random``'s threefry, which the
emulator uses to model the distribution, is not a cryptographic PRG). A :class:`Stream`
expands one seed into a keystream read out in order, never reusing a byte. AES-128-CTR is
the PRG of the published three-party protocols (ABY3 and its successors evaluate it with
AES-NI); through OpenSSL (the ``cryptography`` package) it runs at several GB/s on one core
here, about 2.5 times ChaCha20's rate in the same library.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

BLOCK_BYTES = 16
# The counter block is the stream number (96 bits) then a 32-bit block counter, so a stream
# holds 2^32 blocks before its counter would run into the next stream's.
_STREAM_BYTES = BLOCK_BYTES * 2**32


def stream_cipher(seed: bytes, stream: int = 0):
    """An OpenSSL AES-128-CTR encryptor: the key is the first half of SHA-256(seed), the
    initial counter block the stream number (big-endian, 96 bits) then 32 zero bits."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = hashlib.sha256(bytes(seed)).digest()[:16]
    counter = stream.to_bytes(12, "big") + bytes(4)
    return Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()


class Stream:
    """The keystream of a 32-byte seed (and a 96-bit ``stream`` number), read out in order
    on the host as arrays of any fixed-width dtype (little-endian bytes); no keystream byte
    is used twice. A party process draws its randomness from these."""

    def __init__(self, seed: bytes, stream: int = 0):
        if len(seed) != 32:
            raise ValueError("stream seed must be 32 bytes")
        if not 0 <= stream < 2**96:
            raise ValueError("stream must be in [0, 2^96)")
        self._cipher = stream_cipher(seed, stream)
        self._left = _STREAM_BYTES

    def draw(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = math.prod(int(d) for d in shape) * dtype.itemsize
        if n > self._left:
            raise OverflowError("the stream's block counter is exhausted")
        self._left -= n
        # The keystream is the encryption of zeros, written straight into the result's
        # memory: no intermediate bytes objects (they made draws several times slower).
        out = np.empty(n + BLOCK_BYTES, np.uint8)
        self._cipher.update_into(_zeros(n), out)
        data = out[:n]
        if dtype == np.bool_:
            return (data & 1).astype(np.bool_).reshape(shape)
        return data.view(dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)


_ZEROS = np.zeros(0, np.uint8)


def _zeros(n: int) -> memoryview:
    """``n`` zero bytes, from one buffer that grows to the largest draw so far."""
    global _ZEROS
    if _ZEROS.size < n:
        _ZEROS = np.zeros(max(n, 2 * _ZEROS.size), np.uint8)
        _ZEROS.flags.writeable = False
    return memoryview(_ZEROS)[:n]
