"""ChaCha20 (RFC 8439) keystream as a cryptographic PRG for shares and masks.

Parties derive shares and masks from pairwise seeds with this PRG; ``jax.random``'s threefry is
not a cryptographic PRG. The block function runs as JAX uint32 operations, vectorised over
block counters, so one jitted call yields many blocks.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

_CONSTANTS = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"
_COLUMNS = ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15))
_DIAGONALS = ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14))


def _rotl(x, n):
    return (x << n) | (x >> (32 - n))


def _quarter_round(s, a, b, c, d):
    """RFC 8439 section 2.1, in place on the list of state words ``s``."""
    s[a] += s[b]
    s[d] = _rotl(s[d] ^ s[a], 16)  # noqa: E702
    s[c] += s[d]
    s[b] = _rotl(s[b] ^ s[c], 12)  # noqa: E702
    s[a] += s[b]
    s[d] = _rotl(s[d] ^ s[a], 8)  # noqa: E702
    s[c] += s[d]
    s[b] = _rotl(s[b] ^ s[c], 7)  # noqa: E702


def chacha20_block(key_words, counter, nonce_words) -> jax.Array:
    """ChaCha20 blocks (RFC 8439 section 2.3) for every entry of ``counter``.

    ``key_words``: uint32[8], ``nonce_words``: uint32[3] (little-endian words of the key and
    nonce bytes), ``counter``: uint32 array of any shape. Returns uint32[*counter.shape, 16];
    the keystream bytes are these words in little-endian order.
    """
    counter = jnp.asarray(counter, jnp.uint32)
    key_words = jnp.asarray(key_words, jnp.uint32)
    nonce_words = jnp.asarray(nonce_words, jnp.uint32)
    init = (
        [jnp.full(counter.shape, c, jnp.uint32) for c in _CONSTANTS]
        + [jnp.broadcast_to(key_words[i], counter.shape) for i in range(8)]
        + [counter]
        + [jnp.broadcast_to(nonce_words[i], counter.shape) for i in range(3)]
    )

    def double_round(_, state):
        s = list(state)
        for quarter in _COLUMNS + _DIAGONALS:
            _quarter_round(s, *quarter)
        return tuple(s)

    final = jax.lax.fori_loop(0, 10, double_round, tuple(init))
    return jnp.stack([f + i for f, i in zip(final, init)], axis=-1)


@functools.partial(jax.jit, static_argnums=3)
def _keystream(key_words, nonce_words, first_block, n_blocks):
    counters = first_block + jnp.arange(n_blocks, dtype=jnp.uint32)
    return chacha20_block(key_words, counters, nonce_words).reshape(-1)


class PRG:
    """A ChaCha20 keystream under a 32-byte ``seed``, read out as uniform ring arrays.

    Each :meth:`random` call consumes fresh 64-byte blocks, so no keystream is ever reused.
    ``stream`` selects the 96-bit nonce: one seed gives 2^96 independent streams, each of up to
    2^32 blocks (256 GiB). See :meth:`substream`.
    """

    def __init__(self, seed: bytes, stream: int = 0):
        if len(seed) != 32:
            raise ValueError(f"PRG seed must be 32 bytes, got {len(seed)}")
        if not 0 <= stream < 2**96:
            raise ValueError("stream must be in [0, 2^96)")
        self._seed = bytes(seed)
        self._key = np.frombuffer(self._seed, "<u4").astype(np.uint32)
        self._nonce = np.frombuffer(stream.to_bytes(12, "little"), "<u4").astype(np.uint32)
        self._next_block = 0

    def substream(self, stream: int) -> "PRG":
        """An independent PRG under the same seed and another nonce (use each number once)."""
        return PRG(self._seed, stream)

    def random(self, shape, dtype=np.uint32) -> jax.Array:
        """Uniform ``uint32`` or ``uint64`` array of ``shape`` from the next unused blocks.

        uint64 elements are 8 consecutive keystream bytes read little-endian.
        """
        dtype = np.dtype(dtype)
        if dtype not in (np.uint32, np.uint64):
            raise TypeError(f"PRG draws uint32 or uint64, not {dtype}")
        if dtype == np.uint64 and not jax.config.jax_enable_x64:
            raise TypeError("uint64 draws need jax.enable_x64(True)")
        count = int(np.prod(shape, dtype=np.int64))
        n_words = count * (dtype.itemsize // 4)
        n_blocks = -(-n_words // 16)
        if self._next_block + n_blocks > 2**32:
            raise OverflowError("ChaCha20 block counter exhausted; use a substream")
        words = _keystream(self._key, self._nonce, np.uint32(self._next_block), n_blocks)[:n_words]
        self._next_block += n_blocks
        if dtype == np.uint32:
            return words.reshape(shape)
        pairs = words.reshape(count, 2).astype(jnp.uint64)
        return (pairs[:, 0] | (pairs[:, 1] << 32)).reshape(shape)


def chacha20_keystream(seed: bytes, first_block: int, n_blocks: int, stream: int = 0):
    """The same ChaCha20 keystream words computed on the host by OpenSSL (through
    ``cryptography``; a 16-byte IV is the 32-bit block counter then the 96-bit nonce, as in
    RFC 8439): usable inside a JAX host callback, where calling back into JAX could
    deadlock, and about ten times faster than the block function in numpy. Tests check it
    agrees with :func:`chacha20_block`."""
    if first_block + n_blocks > 2**32:
        raise OverflowError("ChaCha20 block counter exhausted")
    data = _host_cipher(seed, first_block, stream).update(bytes(64 * n_blocks))
    return np.frombuffer(data, "<u4").astype(np.uint32)


def _host_cipher(seed: bytes, first_block: int, stream: int):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    iv = first_block.to_bytes(4, "little") + stream.to_bytes(12, "little")
    return Cipher(algorithms.ChaCha20(bytes(seed), iv), mode=None).encryptor()


class Stream:
    """A ChaCha20 keystream under a 32-byte seed (and a 96-bit ``stream`` number, the
    nonce), read out in order on the host as arrays of any fixed-width dtype (little-endian
    bytes); no keystream byte is used twice. A party process draws its randomness from
    these."""

    def __init__(self, seed: bytes, stream: int = 0):
        if len(seed) != 32:
            raise ValueError("stream seed must be 32 bytes")
        if not 0 <= stream < 2**96:
            raise ValueError("stream must be in [0, 2^96)")
        self._cipher = _host_cipher(seed, 0, stream)
        self._left = 64 * 2**32  # bytes before the 32-bit block counter runs out

    def draw(self, shape, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = math.prod(int(d) for d in shape) * dtype.itemsize
        if n > self._left:
            raise OverflowError("ChaCha20 block counter exhausted")
        self._left -= n
        data = self._cipher.update(bytes(n))
        if dtype == np.bool_:
            return (np.frombuffer(data, np.uint8) & 1).astype(np.bool_).reshape(shape)
        return np.frombuffer(data, dtype.newbyteorder("<")).astype(dtype).reshape(shape)
