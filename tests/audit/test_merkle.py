"""RFC 9162 Merkle hashing and proofs, checked against the RFC's definitions written out here."""

from __future__ import annotations

import hashlib

import pytest

from audit import (
    EMPTY_ROOT,
    Frontier,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    range_hashes,
    root_from_ranges,
    subtree_ranges,
    verify_consistency,
    verify_inclusion,
)

# --- A reference straight from RFC 9162 section 2.1 (recursive, over whole leaf lists) ---


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return _sha(b"")
    if n == 1:
        return _sha(b"\x00" + leaves[0])
    k = _k(n)
    return _sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def proof(m: int, leaves: list[bytes]) -> list[bytes]:
    return subproof(m, leaves, True)


def subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*subproof(m, leaves[:k], b), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


# --- Helpers: the library's streaming proofs over the same leaves ---

LEAVES = [bytes([i]) * (i % 5 + 1) for i in range(40)]


def _hashes(ranges: list[tuple[int, int]], leaves: list[bytes]) -> list[bytes]:
    found = range_hashes(ranges, enumerate(leaf_hash(x) for x in leaves))
    return [found[r] for r in ranges]


def _root(leaves: list[bytes]) -> bytes:
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf_hash(leaf))
    return frontier.root()


# --- Known answers ---


def test_hashing_matches_the_rfc_definitions() -> None:
    # Given the RFC's hashes of the empty tree, one leaf and two leaves, computed by hand
    empty = hashlib.sha256(b"").hexdigest()
    one = hashlib.sha256(b"\x00abc").digest()
    two = hashlib.sha256(
        b"\x01" + hashlib.sha256(b"\x00a").digest() + hashlib.sha256(b"\x00b").digest()
    ).digest()
    # Then the library agrees
    assert EMPTY_ROOT.hex() == empty
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"abc") == one
    assert _root([b"a", b"b"]) == two


@pytest.mark.parametrize("size", range(0, 41))
def test_the_frontier_root_is_the_rfc_tree_hash(size: int) -> None:
    assert _root(LEAVES[:size]) == mth(LEAVES[:size])


def test_a_fixed_known_answer_root() -> None:
    # The root of the 7 leaves b"0" ... b"6", computed from the RFC definition
    leaves = [str(i).encode() for i in range(7)]
    assert _root(leaves).hex() == mth(leaves).hex()
    l0, l1, l2, l3, l4, l5, l6 = (hashlib.sha256(b"\x00" + x).digest() for x in leaves)

    def n(a: bytes, b: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + a + b).digest()

    assert _root(leaves) == n(n(n(l0, l1), n(l2, l3)), n(n(l4, l5), l6))


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 40])
def test_inclusion_proofs_match_the_rfc_and_verify(size: int) -> None:
    leaves = LEAVES[:size]
    root = mth(leaves)
    for index in range(size):
        audit_path = _hashes(inclusion_ranges(index, size), leaves)
        assert audit_path == path(index, leaves)
        assert verify_inclusion(index, size, leaf_hash(leaves[index]), audit_path, root)


@pytest.mark.parametrize("new_size", [2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 40])
def test_consistency_proofs_match_the_rfc_and_verify(new_size: int) -> None:
    leaves = LEAVES[:new_size]
    for old_size in range(1, new_size + 1):
        consistency = _hashes(consistency_ranges(old_size, new_size), leaves)
        assert consistency == proof(old_size, leaves)
        assert verify_consistency(
            old_size, new_size, mth(leaves[:old_size]), mth(leaves), consistency
        )


# --- Mutated proofs are rejected ---


def _flip(digest: bytes) -> bytes:
    return bytes([digest[0] ^ 1]) + digest[1:]


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 2), (3, 7), (6, 7), (8, 17), (16, 17)])
def test_mutated_inclusion_proofs_are_rejected(index: int, size: int) -> None:
    # (A size whose tree has the same path, such as 7 and 8 for leaf 3, proves the same thing:
    # the signed checkpoint, not the proof, fixes the size.)
    leaves = LEAVES[:size]
    root, leaf = mth(leaves), leaf_hash(leaves[index])
    good = path(index, leaves)
    assert verify_inclusion(index, size, leaf, good, root)
    other_root = mth(LEAVES[: size + 1])
    mutations = [
        (index + 1, size, leaf, good, root),  # index off by one
        (index - 1, size, leaf, good, root),
        (index, 2 * size + 1, leaf, good, root),  # a tree size the path does not fit
        (index, index, leaf, good, root),  # a tree too small to hold the leaf
        (index, size, _flip(leaf), good, root),  # flipped bit in the leaf
        (index, size, leaf, good, _flip(root)),  # ... in the root
        (index, size, leaf, [*good, good[0] if good else root], root),  # extra hash
        (index, size, leaf, good, other_root),  # another tree's root
    ]
    if good:
        mutations += [
            (index, size, leaf, good[:-1], root),  # missing hash
            (index, size, leaf, [_flip(good[0]), *good[1:]], root),  # flipped bit in the path
            (index, size, leaf, list(reversed(good)), root) if len(good) > 1 else None,
        ]
    for mutation in filter(None, mutations):
        assert not verify_inclusion(*mutation), mutation[:2]


@pytest.mark.parametrize(("old", "new"), [(1, 2), (3, 7), (4, 8), (6, 8), (7, 17), (16, 40)])
def test_mutated_consistency_proofs_are_rejected(old: int, new: int) -> None:
    leaves = LEAVES[:new]
    old_root, new_root = mth(leaves[:old]), mth(leaves)
    good = proof(old, leaves)
    assert verify_consistency(old, new, old_root, new_root, good)
    mutations = [
        (old + 1, new, old_root, new_root, good),  # wrong old size
        (old, 2 * new + 1, old_root, new_root, good),  # a new size the proof does not fit
        (old, new, new_root, old_root, good),  # swapped roots
        (old, new, _flip(old_root), new_root, good),
        (old, new, old_root, _flip(new_root), good),
        (old, new, old_root, new_root, good[:-1]),  # missing hash
        (old, new, old_root, new_root, [*good, good[0]]),  # extra hash
        (old, new, old_root, new_root, [_flip(good[0]), *good[1:]]),  # flipped bit
        (old, new, old_root, new_root, []),  # no proof at all
    ]
    for mutation in mutations:
        assert not verify_consistency(*mutation), mutation[:2]


# --- Pruned prefixes: proofs from the frontier that replaces the leaves ---


def test_proofs_and_roots_come_from_a_pruned_prefix_frontier() -> None:
    # Given a 40-leaf tree whose first 13 leaves were replaced by their frontier
    size, pruned = 40, 13
    prefix = Frontier()
    for leaf in LEAVES[:pruned]:
        prefix.append(leaf_hash(leaf))
    known = dict(prefix.ranges())
    rest = [(i, leaf_hash(LEAVES[i])) for i in range(pruned, size)]
    # When proofs and roots are computed without the pruned leaves
    for index in range(pruned, size):
        ranges = inclusion_ranges(index, size)
        found = range_hashes(ranges, iter(rest), known)
        # Then they equal the RFC's
        assert [found[r] for r in ranges] == path(index, LEAVES[:size])
    root = range_hashes([(0, size)], iter(rest), known)[(0, size)]
    assert root == mth(LEAVES[:size])


def test_a_root_is_recomputed_from_the_subtrees_that_cover_it() -> None:
    size, start, end = 40, 11, 23
    left = Frontier()
    for leaf in LEAVES[:end]:
        left.append(leaf_hash(leaf))
    right_ranges = subtree_ranges(end, size, size)
    right = range_hashes(right_ranges, enumerate(leaf_hash(x) for x in LEAVES[:size]))
    known = {**dict(left.ranges()), **right}
    assert root_from_ranges(size, known) == mth(LEAVES[:size])
    del known[right_ranges[0]]
    with pytest.raises(ValueError, match="not covered"):
        root_from_ranges(size, known)
    assert start < end
