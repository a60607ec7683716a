"""The parties' PRG: AES-128-CTR (NIST SP 800-38A vector), stream discipline, uniformity."""

import hashlib

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secjax.runtime.prg import Stream, stream_cipher

SEED = bytes(range(32))


def keystream(seed: bytes, stream: int, n: int) -> bytes:
    """The contract, computed independently: AES-128-CTR under the first half of
    SHA-256(seed), counter block = stream number (96 bits, big-endian) then 0^32."""
    key = hashlib.sha256(seed).digest()[:16]
    counter = stream.to_bytes(12, "big") + bytes(4)
    return Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor().update(bytes(n))


def test_aes128_ctr_vector():
    """NIST SP 800-38A, F.5.1 (CTR-AES128.Encrypt), first block: the cipher the streams use
    is AES-128 in counter mode."""
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    counter = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    plaintext = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    cipher = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    assert cipher.update(plaintext).hex() == "874d6191b620e3261bef6864990db6ce"


def test_draws_continue_the_keystream_in_order():
    """Consecutive draws of any dtype are consecutive keystream bytes, read little-endian,
    never overlapping."""
    stream = Stream(SEED, stream=3)
    a = stream.draw((3, 5), np.uint64)
    b = stream.draw((7,), np.uint8)
    c = stream.draw((4,), np.uint32)
    d = stream.draw((9,), np.bool_)
    raw = keystream(SEED, 3, 3 * 5 * 8 + 7 + 16 + 9)
    assert a.dtype == np.uint64 and a.shape == (3, 5)
    assert a.tobytes() == np.frombuffer(raw[:120], "<u8").tobytes()
    assert b.tobytes() == raw[120:127]
    assert c.tobytes() == np.frombuffer(raw[127:143], "<u4").tobytes()
    np.testing.assert_array_equal(d, np.frombuffer(raw[143:152], np.uint8) & 1)
    assert stream_cipher(SEED, 3).update(bytes(16)) == raw[:16]


def test_seeds_and_streams_differ():
    draws = [
        Stream(SEED).draw((256,), np.uint64),
        Stream(bytes(31) + b"\x01").draw((256,), np.uint64),
        Stream(SEED, stream=1).draw((256,), np.uint64),
        Stream(SEED, stream=2**96 - 1).draw((256,), np.uint64),
    ]
    for i in range(len(draws)):
        for j in range(i):
            assert np.mean(draws[i] == draws[j]) == 0


def test_bytes_look_uniform():
    """Chi-square over byte values of 1 MiB of keystream (255 degrees of freedom)."""
    data = Stream(bytes(32)).draw((2**20,), np.uint8)
    counts = np.bincount(data, minlength=256)
    expected = data.size / 256
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert 255 - 6 * 22.6 < chi2 < 255 + 6 * 22.6  # mean 255, sd sqrt(2 * 255)


def test_bad_arguments_and_exhaustion():
    with pytest.raises(ValueError, match="32 bytes"):
        Stream(b"short")
    with pytest.raises(ValueError, match="stream must be"):
        Stream(SEED, stream=2**96)
    stream = Stream(SEED)
    stream._left = 8
    stream.draw((1,), np.uint64)
    with pytest.raises(OverflowError, match="exhausted"):
        stream.draw((1,), np.uint8)
