"""SHA-256 of many messages at once: the compiled hasher and hashlib give the same bytes."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np
import pytest

from chronoml import digests
from chronoml.domain import merkle


def _expected(messages: list[bytes], prefix: bytes = b"") -> bytes:
    return b"".join(hashlib.sha256(prefix + m).digest() for m in messages)


@pytest.mark.parametrize("width", [1, 31, 32, 55, 56, 63, 64, 65, 119, 300, 4096])
@pytest.mark.parametrize("prefix", [b"", b"\x01", bytes(range(70))], ids=["none", "node", "long"])
def test_rows_are_hashlib_digests_of_each_row(width: int, prefix: bytes) -> None:
    n = 37
    data = os.urandom(width * n)
    want = _expected([data[i * width : (i + 1) * width] for i in range(n)], prefix)
    assert digests.rows(data, width, prefix) == want
    assert digests.rows_hashlib(memoryview(data), width, prefix) == want
    assert digests.rows(bytearray(data), width, prefix) == want


def test_rows_take_a_numpy_matrix_without_copying_it_first() -> None:
    mat = np.frombuffer(os.urandom(48 * 10), dtype=np.uint8).reshape(10, 48)
    assert digests.rows(mat.data, 48) == _expected([r.tobytes() for r in mat])


def test_no_rows_give_no_digests() -> None:
    assert digests.rows(b"", 64, b"\x01") == b""
    assert digests.rows(np.empty((0, 64), dtype=np.uint8).data, 64) == b""
    assert digests.each([]) == b""


@pytest.mark.parametrize("each", [digests.each, digests.each_hashlib])
def test_each_takes_any_iterable_of_bytes_and_their_subclasses(each: object) -> None:
    class Raw(bytes):
        pass

    assert callable(each)
    messages = [b"a", Raw(b"b"), b""]
    assert each(iter(messages)) == _expected([bytes(m) for m in messages])


@pytest.mark.parametrize("bad", [0, -1, 7])
def test_rows_refuse_data_that_is_not_whole_rows(bad: int) -> None:
    with pytest.raises(ValueError, match="whole rows"):
        digests.rows(os.urandom(64), bad)


def test_each_hashes_messages_of_any_length() -> None:
    rng = random.Random(5)
    messages = [os.urandom(rng.randrange(0, 600)) for _ in range(200)]
    want = _expected(messages)
    assert digests.each(messages) == want
    assert digests.each(tuple(messages)) == want
    assert digests.each_hashlib(messages) == want


@pytest.mark.parametrize("each", [digests.each, digests.each_hashlib])
def test_each_refuses_what_is_not_bytes(each: object) -> None:
    assert callable(each)
    with pytest.raises(TypeError, match="item 1"):
        each([b"a", "b"])


def test_the_merkle_root_over_the_fast_levels_matches_the_rfc_recursion() -> None:
    def mth(leaves: list[bytes]) -> bytes:  # RFC 9162 2.1.1, written out
        if len(leaves) == 1:
            return leaves[0]
        k = 1 << ((len(leaves) - 1).bit_length() - 1)
        return merkle.node_hash(mth(leaves[:k]), mth(leaves[k:]))

    for n in (1, 2, 3, 5, 8, 13, 64, 1000):
        leaves = [merkle.leaf_hash(os.urandom(20)) for _ in range(n)]
        assert merkle.root_of(leaves) == mth(leaves)


def test_the_compiled_hasher_is_built_under_ci() -> None:
    # the install builds it from OpenSSL; without it every test above ran hashlib twice
    if os.environ.get("CI") != "true" and not digests.ACCELERATED:
        pytest.skip("chronoml._digests is not built here (no compiler or OpenSSL headers)")
    assert digests.ACCELERATED
