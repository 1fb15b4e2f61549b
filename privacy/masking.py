"""Static masking of columns: keyed pseudonyms, generalization and suppression.

Pseudonyms are HMAC-SHA256 tokens under a secret key of the deployment: equal values get equal
tokens under one key (so joins and counts still work), and without the key a token cannot be
traced back by hashing guesses. The key is never stored with the data.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

PSEUDONYM_PREFIX: Final = "pn_"
MIN_KEY_BYTES: Final = 16


class MissingKeyError(Exception):
    """The pseudonymization key is missing or unusable."""


class Pseudonymizer:
    """Replaces values by keyed HMAC-SHA256 tokens (``pn_`` and 32 hex digits)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise MissingKeyError(f"the pseudonymization key needs {MIN_KEY_BYTES}+ bytes")
        self._key = key

    @classmethod
    def from_key_file(cls, path: Path) -> Pseudonymizer:
        """The pseudonymizer of a key file holding hex.

        Raises:
            MissingKeyError: the file is missing, unreadable or not a key.
        """
        try:
            return cls(bytes.fromhex(path.read_text().strip()))
        except FileNotFoundError:
            raise MissingKeyError(f"the pseudonymization key file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise MissingKeyError(
                f"the pseudonymization key file {path} is unusable: {exc}"
            ) from None

    def token(self, value: str) -> str:
        """The pseudonym of one value."""
        digest = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return PSEUDONYM_PREFIX + digest[:32]

    def pseudonymize(self, values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
        """Pseudonyms of ``values`` as strings; nulls stay null.

        Each distinct value is hashed once, then the tokens are spread back by dictionary index.
        """
        text = pc.cast(values, pa.large_string())
        encoded = pc.dictionary_encode(text)
        chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
        out = []
        for chunk in chunks:
            tokens = pa.array(
                [self.token(v) for v in chunk.dictionary.to_pylist()], pa.large_string()
            )
            out.append(pc.take(tokens, chunk.indices))
        return pa.chunked_array(out, pa.large_string())


def generalize_band(values: pa.ChunkedArray, width: int) -> pa.ChunkedArray:
    """Numbers rounded down to the start of their band of ``width`` (age 37, width 10: 30)."""
    if width < 1:
        raise ValueError("a band is at least 1 wide")
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise ValueError(f"bands need numbers, not {values.type}")
    banded = pc.multiply(pc.floor(pc.divide(pc.cast(values, pa.float64()), width)), width)
    return pc.cast(banded, values.type)


def truncate(values: pa.ChunkedArray, keep: int) -> pa.ChunkedArray:
    """Text cut to its first ``keep`` characters (postcode ``SW1A 1AA``, keep 3: ``SW1``)."""
    if keep < 1:
        raise ValueError("keep at least 1 character")
    return pc.utf8_slice_codeunits(pc.cast(values, pa.large_string()), 0, keep)


def mask(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Every value removed (null), the column and its type kept."""
    return pa.chunked_array([pa.nulls(len(values), values.type)], values.type)
