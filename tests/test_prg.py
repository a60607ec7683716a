"""ChaCha20 PRG: RFC 8439 test vectors, stream discipline, byte uniformity."""

import jax
import numpy as np
import pytest

from secjax.runtime.prg import PRG, chacha20_block

KEY = bytes(range(32))  # 00:01:...:1f, the key of RFC 8439 sections 2.3.2 and 2.4.2


def words(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<u4")


def test_rfc8439_block_function():
    """RFC 8439 section 2.3.2: the state after 20 rounds plus the input state."""
    nonce = bytes.fromhex("000000090000004a00000000")
    expected = [
        0xE4E7F110,
        0x15593BD1,
        0x1FDD0F50,
        0xC47120A3,
        0xC7F4D1C7,
        0x0368C033,
        0x9AAA2204,
        0x4E6CD4C3,
        0x466482D2,
        0x09AA9F07,
        0x05D7C214,
        0xA2028BD9,
        0xD19C12B5,
        0xB94E16DE,
        0xE883D0CB,
        0x4E3C50A2,
    ]
    block = chacha20_block(words(KEY), np.array([1], np.uint32), words(nonce))
    assert block.shape == (1, 16)
    np.testing.assert_array_equal(np.asarray(block[0]), np.array(expected, np.uint32))


def test_rfc8439_encryption_keystream():
    """RFC 8439 section 2.4.2: ciphertext XOR plaintext is the keystream from counter 1."""
    nonce = bytes.fromhex("000000000000004a00000000")
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one "
        b"tip for the future, sunscreen would be it."
    )
    ciphertext = bytes.fromhex(
        "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b"
        "f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8"
        "07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736"
        "5af90bbf74a35be6b40b8eedf2785e42874d"
    )
    block = chacha20_block(words(KEY), np.array([1, 2], np.uint32), words(nonce))
    stream = np.asarray(block).astype("<u4").tobytes()[: len(plaintext)]
    assert bytes(a ^ b for a, b in zip(plaintext, stream)) == ciphertext


def test_calls_continue_the_stream():
    """Consecutive draws are consecutive keystream, never overlapping, both widths."""
    with jax.enable_x64(True):
        whole = np.asarray(PRG(KEY).random((64,), np.uint32))
        prg = PRG(KEY)
        first, second = prg.random((3, 5)), prg.random((16,))  # 15 words use one block
        np.testing.assert_array_equal(np.asarray(first).ravel(), whole[:15])
        np.testing.assert_array_equal(np.asarray(second), whole[16:32])
        wide = np.asarray(PRG(KEY).random((8,), np.uint64))
        np.testing.assert_array_equal(wide, whole[:16].view(np.uint64))


def test_seeds_and_substreams_differ():
    with jax.enable_x64(True):
        draws = [
            PRG(KEY).random((256,), np.uint64),
            PRG(bytes(31) + b"\x01").random((256,), np.uint64),
            PRG(KEY).substream(1).random((256,), np.uint64),
            PRG(KEY, stream=2).random((256,), np.uint64),
        ]
    for i in range(len(draws)):
        for j in range(i):
            assert np.mean(np.asarray(draws[i]) == np.asarray(draws[j])) == 0


def test_bytes_look_uniform():
    """Chi-square over byte values of 1 MiB of keystream (255 degrees of freedom)."""
    data = np.asarray(PRG(bytes(32)).random((2**18,), np.uint32)).view(np.uint8)
    counts = np.bincount(data, minlength=256)
    expected = data.size / 256
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert 255 - 6 * 22.6 < chi2 < 255 + 6 * 22.6  # mean 255, sd sqrt(2 * 255)


def test_bad_arguments():
    with pytest.raises(ValueError):
        PRG(b"short")
    with pytest.raises(TypeError):
        PRG(KEY).random((2,), np.float32)
    with jax.enable_x64(False), pytest.raises(TypeError):
        PRG(KEY).random((2,), np.uint64)
