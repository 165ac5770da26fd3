"""RFC 6962/9162 Merkle trees: roots, inclusion and consistency proofs, and their failures."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronoml.domain import merkle as M

MAX = 70


def ref_root(data: list[bytes]) -> bytes:
    """MTH straight from the RFC's recursive definition, over raw leaf data."""
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = 1
    while 2 * k < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_root(data[:k]) + ref_root(data[k:])).digest()


def data_of(n: int, salt: bytes = b"") -> list[bytes]:
    return [salt + i.to_bytes(4, "big") for i in range(n)]


def hashes_of(data: list[bytes]) -> list[bytes]:
    return [M.leaf_hash(d) for d in data]


TREES = {n: M.MerkleTree(hashes_of(data_of(n))) for n in range(1, MAX + 1)}
ROOTS = {n: ref_root(data_of(n)) for n in range(0, MAX + 1)}


def flip(h: bytes, at: int = 0) -> bytes:
    b = bytearray(h)
    b[at] ^= 0x01
    return bytes(b)


def test_rfc6962_reference_roots() -> None:
    # the published CT test vectors: roots of the first n of these eight leaves
    leaves = [
        bytes.fromhex(h)
        for h in [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
    ]
    roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
    tree = M.MerkleTree(hashes_of(leaves))
    assert [tree.root(n).hex() for n in range(1, 9)] == roots
    assert M.EMPTY_ROOT.hex() == hashlib.sha256(b"").hexdigest() == tree.root(0).hex()


@pytest.mark.parametrize("n", range(0, MAX + 1))
def test_every_way_of_holding_a_tree_gives_the_rfc_root(n: int) -> None:
    hs = hashes_of(data_of(n))
    appended = M.MerkleTree()
    appended.extend(hs)
    edge = M.CompactRange()
    edge.extend(hs)
    assert M.root_of(hs) == ROOTS[n]
    assert M.MerkleTree(hs).root() == ROOTS[n]
    assert appended.root() == ROOTS[n]
    assert edge.root() == ROOTS[n]
    assert edge.size == n and len(edge.peaks) == n.bit_count()
    # a bigger tree still answers for every earlier size
    assert TREES[MAX].root(n) == ROOTS[n]
    assert TREES[MAX].compact_range(n).root() == ROOTS[n]


@pytest.mark.parametrize("n", range(1, MAX + 1))
def test_every_inclusion_proof_verifies_and_wrong_claims_fail(n: int) -> None:
    tree, root = TREES[n], ROOTS[n]
    for i in range(n):
        leaf = tree.leaf(i)
        proof = tree.inclusion_proof(i)
        assert M.verify_inclusion(i, n, leaf, proof, root)
        assert TREES[MAX].inclusion_proof(i, n) == proof  # same proof from a bigger tree
        assert not M.verify_inclusion(i, n, flip(leaf), proof, root)
        assert not M.verify_inclusion(i, n, leaf, proof, flip(root, 31))
        for j in (i - 1, i + 1):  # a neighbouring index
            assert not M.verify_inclusion(j, n, leaf, proof, root)
        for other in (n - 1, n + 1, 2 * n):  # another size, with that size's root
            if other >= 1 and other != n and other in ROOTS:
                assert not M.verify_inclusion(i, other, leaf, proof, ROOTS[other])
        for k in range(len(proof)):
            bad = list(proof)
            bad[k] = flip(bad[k], k % 32)
            assert not M.verify_inclusion(i, n, leaf, bad, root)
        if proof:
            assert not M.verify_inclusion(i, n, leaf, proof[:-1], root)
            assert not M.verify_inclusion(i, n, leaf, proof[1:], root)
        assert not M.verify_inclusion(i, n, leaf, [*proof, root], root)
        if len(proof) >= 2:
            swapped = [proof[1], proof[0], *proof[2:]]
            assert not M.verify_inclusion(i, n, leaf, swapped, root)


@pytest.mark.parametrize("n", range(1, MAX + 1))
def test_every_consistency_proof_verifies_and_wrong_claims_fail(n: int) -> None:
    big = TREES[MAX]
    for m in range(0, n + 1):
        proof = big.consistency_proof(m, n)
        assert M.verify_consistency(m, n, ROOTS[m], ROOTS[n], proof), (m, n)
        if m in (0, n):
            assert proof == []
            continue
        assert not M.verify_consistency(m, n, flip(ROOTS[m]), ROOTS[n], proof)
        assert not M.verify_consistency(m, n, ROOTS[m], flip(ROOTS[n]), proof)
        for k in range(len(proof)):
            bad = list(proof)
            bad[k] = flip(bad[k], (7 * k) % 32)
            assert not M.verify_consistency(m, n, ROOTS[m], ROOTS[n], bad)
        assert not M.verify_consistency(m, n, ROOTS[m], ROOTS[n], proof[:-1])
        assert not M.verify_consistency(m, n, ROOTS[m], ROOTS[n], proof[1:])
        assert not M.verify_consistency(m, n, ROOTS[m], ROOTS[n], [*proof, ROOTS[n]])
        if len(proof) >= 2 and proof[0] != proof[1]:
            swapped = [proof[1], proof[0], *proof[2:]]
            assert not M.verify_consistency(m, n, ROOTS[m], ROOTS[n], swapped)
        for m2 in (m - 1, m + 1):  # another old size, with its real root
            if 1 <= m2 < n:
                assert not M.verify_consistency(m2, n, ROOTS[m2], ROOTS[n], proof)
        if n + 1 in ROOTS:
            assert not M.verify_consistency(m, n + 1, ROOTS[m], ROOTS[n + 1], proof)


def test_a_rewritten_prefix_is_not_consistent_with_the_new_tree() -> None:
    # the insider's re-seal: same sizes, one early leaf changed, every root recomputed
    n, m = 40, 25
    forged = data_of(n)
    forged[3] = b"someone else"
    forged_tree = M.MerkleTree(hashes_of(forged))
    # the forger can make a proof for his own tree, but not from the published old root
    proof = forged_tree.consistency_proof(m, n)
    assert M.verify_consistency(m, n, forged_tree.root(m), forged_tree.root(n), proof)
    assert not M.verify_consistency(m, n, ROOTS[m], forged_tree.root(n), proof)
    # truncation: a smaller tree is not an extension of a larger published one
    assert not M.verify_consistency(n, m, ROOTS[n], ROOTS[m], [])


def test_malformed_requests_raise_naming_the_field() -> None:
    tree = TREES[5]
    with pytest.raises(M.MerkleError) as e:
        tree.inclusion_proof(5)
    assert e.value.field == "index"
    with pytest.raises(M.MerkleError) as e:
        tree.consistency_proof(3, 9)
    assert e.value.field == "size"
    with pytest.raises(M.MerkleError) as e:
        M.make_consistency_proof(tree.node, 4, 3)
    assert e.value.field == "old_size"
    with pytest.raises(M.MerkleError) as e:
        tree.append(b"short")
    assert e.value.field == "leaf"
    with pytest.raises(M.MerkleError):
        M.root_of([b"x" * 31])
    assert not M.verify_inclusion(0, 0, tree.leaf(0), [], ROOTS[5])
    assert not M.verify_inclusion(0, 5, tree.leaf(0), [b"short"], ROOTS[5])
    assert not M.verify_consistency(3, 2, ROOTS[3], ROOTS[2], [])


def test_compact_range_round_trips_and_resumes() -> None:
    hs = hashes_of(data_of(MAX))
    edge = M.CompactRange()
    edge.extend(hs[:37])
    again = M.CompactRange.from_dict(edge.to_dict())
    assert again == edge
    again.extend(hs[37:])
    assert again.root() == ROOTS[MAX]
    assert edge.root() == ROOTS[37]  # the original was left alone
    with pytest.raises(M.MerkleError) as e:
        M.CompactRange(3, [hs[0]])
    assert e.value.field == "peaks"
    with pytest.raises(M.MerkleError):
        M.CompactRange.from_dict({"size": 1, "peaks": ["zz"]})


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 600), st.data())
def test_property_random_proofs_verify_and_any_flip_fails(n: int, data: st.DataObject) -> None:
    leaves = [M.leaf_hash(b"p" + i.to_bytes(4, "big")) for i in range(n)]
    tree = M.MerkleTree(leaves)
    root = tree.root()
    assert root == M.root_of(leaves)
    i = data.draw(st.integers(0, n - 1))
    proof = tree.inclusion_proof(i)
    assert M.verify_inclusion(i, n, leaves[i], proof, root)
    m = data.draw(st.integers(1, n))
    cproof = tree.consistency_proof(m)
    assert M.verify_consistency(m, n, tree.root(m), root, cproof)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        byte = data.draw(st.integers(0, 31))
        bad = list(proof)
        bad[k] = flip(bad[k], byte)
        assert not M.verify_inclusion(i, n, leaves[i], bad, root)
    if cproof:
        k = data.draw(st.integers(0, len(cproof) - 1))
        bad = list(cproof)
        bad[k] = flip(bad[k], data.draw(st.integers(0, 31)))
        assert not M.verify_consistency(m, n, tree.root(m), root, bad)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=200), st.data())
def test_property_appending_matches_building(items: list[bytes], data: st.DataObject) -> None:
    hs = [M.leaf_hash(x) for x in items]
    cut = data.draw(st.integers(0, len(hs)))
    tree = M.MerkleTree(hs[:cut])
    edge = tree.compact_range()
    tree.extend(hs[cut:])
    edge.extend(hs[cut:])
    assert tree.root() == edge.root() == ref_root(items)


def from_table(table: dict[tuple[int, int], bytes]) -> M.NodeSource:
    return lambda level, index: table[(level, index)]


def test_a_node_table_from_appends_serves_every_proof() -> None:
    # what a store does: keep the nodes each append completes, fetch only those a proof reads
    hs = hashes_of(data_of(MAX))
    edge = M.CompactRange()
    table: dict[tuple[int, int], bytes] = {}
    for leaf in hs:
        for level, index, h in edge.append(leaf):
            assert (level, index) not in table
            table[(level, index)] = h
    full = TREES[MAX]
    assert table == {
        (lvl, i): full.node(lvl, i) for lvl in range(MAX.bit_length()) for i in range(MAX >> lvl)
    }
    for n in range(1, MAX + 1):
        for i in range(n):
            wanted = M.inclusion_proof_nodes(i, n)
            assert len(wanted) <= 2 * n.bit_length()
            fetched = {k: table[k] for k in wanted}
            proof = M.make_inclusion_proof(from_table(fetched), i, n)
            assert proof == full.inclusion_proof(i, n)
        for m in range(n + 1):
            fetched = {k: table[k] for k in M.consistency_proof_nodes(m, n)}
            proof = M.make_consistency_proof(from_table(fetched), m, n)
            assert proof == full.consistency_proof(m, n)
