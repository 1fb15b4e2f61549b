"""RFC 9162 Merkle trees: hashing, compact ranges, inclusion and consistency proofs.

A tree of ``n`` leaves is never held in memory. Proofs are first planned as the leaf ranges
``(start, end)`` whose subtree hashes they need (:func:`inclusion_ranges`,
:func:`consistency_ranges`), then those hashes are computed in one ordered pass over the leaf
hashes (:func:`range_hashes`). A :class:`Frontier` (the perfect subtrees covering a prefix of the
log, biggest first) is the whole state a log needs to append and to compute its root, and the
state that remains of a pruned prefix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

_sha256 = hashlib.sha256

Range = tuple[int, int]
EMPTY_ROOT = _sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``: the hash of a leaf."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``: the hash of an interior node."""
    return _sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two smaller than ``size`` (``size`` >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


class Frontier:
    """The perfect subtrees covering the first ``size`` leaves: a log's compact tree state.

    The subtrees' sizes are the binary digits of ``size``, biggest first, so appending a leaf
    is a binary increment: it merges one subtree per trailing one bit, one leaf hash plus, on
    average, one node hash.

    Attributes:
        size: how many leaves it covers.
        subtrees: the subtree hashes, biggest (leftmost) subtree first. Verification's inner
            loop appends to it in place, with the same binary increment as :meth:`append`.
    """

    __slots__ = ("size", "subtrees")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count() or any(len(h) != 32 for h in hashes):
            raise ValueError(f"a frontier of {size} leaves has {size.bit_count()} 32-byte hashes")
        self.size = size
        self.subtrees = list(hashes)

    def ranges(self) -> Iterator[tuple[Range, bytes]]:
        """Each subtree's leaf range with its hash."""
        start = 0
        sizes = [1 << b for b in reversed(range(self.size.bit_length())) if self.size >> b & 1]
        for size, digest in zip(sizes, self.subtrees, strict=True):
            yield (start, start + size), digest
            start += size

    def append(self, digest: bytes, span: int = 1) -> None:
        """Add a leaf by its leaf hash, or a whole perfect subtree of ``span`` leaves."""
        count = self.size
        if span != 1:
            if span & (span - 1) or count % span:
                raise ValueError(f"a subtree of {span} leaves does not align after {count}")
            count //= span
        hashes = self.subtrees
        self.size += span
        while count & 1:
            digest = _sha256(b"\x01" + hashes.pop() + digest).digest()
            count >>= 1
        hashes.append(digest)

    def root(self) -> bytes:
        """The Merkle tree hash of the leaves so far (RFC 9162 MTH)."""
        if not self.subtrees:
            return EMPTY_ROOT
        digest = self.subtrees[-1]
        for left in reversed(self.subtrees[:-1]):
            digest = node_hash(left, digest)
        return digest

    def copy(self) -> Frontier:
        """An independent copy."""
        return Frontier(self.size, self.subtrees)


def subtree_ranges(start: int, end: int, size: int) -> list[Range]:
    """The largest subtrees of a tree of ``size`` leaves that exactly cover ``[start, end)``."""
    if not 0 <= start <= end <= size:
        raise ValueError(f"range [{start}, {end}) is not within a tree of {size} leaves")
    found: list[Range] = []

    def visit(lo: int, hi: int) -> None:
        if hi <= start or end <= lo:
            return
        if start <= lo and hi <= end:
            found.append((lo, hi))
            return
        middle = lo + _split(hi - lo)
        visit(lo, middle)
        visit(middle, hi)

    if start < end:
        visit(0, size)
    return found


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose hashes form the inclusion proof of leaf ``index`` (RFC 9162 PATH)."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    ranges: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        middle = lo + _split(hi - lo)
        if index < middle:
            ranges.append((middle, hi))
            hi = middle
        else:
            ranges.append((lo, middle))
            lo = middle
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The subtrees whose hashes prove ``old_size`` is a prefix of ``new_size`` (RFC 9162 PROOF)."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    ranges: list[Range] = []

    def subproof(m: int, lo: int, hi: int, complete: bool) -> None:
        if lo + m == hi:
            if not complete:
                ranges.append((lo, hi))
            return
        k = _split(hi - lo)
        if m <= k:
            subproof(m, lo, lo + k, complete)
            ranges.append((lo + k, hi))
        else:
            subproof(m - k, lo + k, hi, False)
            ranges.append((lo, lo + k))

    if old_size < new_size:
        subproof(old_size, 0, new_size, True)
    return ranges


def range_hashes(
    ranges: Iterable[Range],
    leaves: Iterable[tuple[int, bytes]],
    known: Mapping[Range, bytes] | None = None,
) -> dict[Range, bytes]:
    """The subtree hash of each range, from one ordered pass over the leaf hashes.

    Args:
        ranges: disjoint leaf ranges of subtrees.
        leaves: ``(index, leaf hash)`` in increasing index, covering at least every range that
            ``known`` does not resolve.
        known: hashes of subtrees whose leaves are gone (a pruned prefix's frontier); a range
            is resolved from them when it is one of them or is covered by them exactly.
    """
    known = dict(known or {})
    result: dict[Range, bytes] = {}
    pending = sorted(ranges)
    for item in pending:
        resolved = _from_known(item, known)
        if resolved is not None:
            result[item] = resolved
    pending = [item for item in pending if item not in result]
    if not pending:
        return result
    stream = iter(leaves)
    tiles = sorted(known.items())
    for lo, hi in pending:
        frontier = Frontier()
        position = lo
        for (start, end), digest in tiles:
            if start == position and end <= hi:
                frontier.append(digest, end - start)
                position = end
        for index, digest in stream:
            if index < position:
                continue
            if index != position:
                raise ValueError(f"leaf {position} is missing from the leaf stream")
            frontier.append(digest)
            position += 1
            if position == hi:
                break
        if position != hi:
            raise ValueError(f"the leaf stream ended before leaf {hi - 1}")
        result[(lo, hi)] = frontier.root()
    return result


def _from_known(item: Range, known: Mapping[Range, bytes]) -> bytes | None:
    if item in known:
        return known[item]
    lo, hi = item
    if hi - lo < 2:
        return None
    middle = lo + _split(hi - lo)
    left, right = _from_known((lo, middle), known), _from_known((middle, hi), known)
    return node_hash(left, right) if left is not None and right is not None else None


def root_from_ranges(size: int, known: Mapping[Range, bytes]) -> bytes:
    """The root of a tree of ``size`` leaves from subtree hashes that cover it.

    Raises:
        ValueError: the subtrees do not cover the tree.
    """
    if size == 0:
        return EMPTY_ROOT

    def mth(lo: int, hi: int) -> bytes:
        if (lo, hi) in known:
            return known[(lo, hi)]
        if hi - lo == 1:
            raise ValueError(f"leaf {lo} is not covered")
        middle = lo + _split(hi - lo)
        return node_hash(mth(lo, middle), mth(middle, hi))

    return mth(0, size)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows the leaf with hash ``leaf`` at ``index`` in the tree ``root``.

    The verification algorithm of RFC 9162 section 2.1.3.2.
    """
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    digest = leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            digest = node_hash(sibling, digest)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            digest = node_hash(digest, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and digest == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree ``old_root`` is a prefix of the tree ``new_root``.

    The verification algorithm of RFC 9162 section 2.1.4.2.
    """
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
