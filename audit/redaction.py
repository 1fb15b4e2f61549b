"""Keeping secrets out of the trail: sensitive values become a keyed HMAC-SHA256.

An auditor who holds the key (and a candidate value) can still check "was this value used",
while the trail, its exports and anyone who reads them never see the value, and a low-entropy
secret cannot be guessed from a plain hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any

from audit.events import canonical_json

_SENSITIVE_NAME = re.compile(
    r"(pass(word|phrase)?|secret|token|api[_-]?key|credential|authorization|private[_-]?key)",
    re.IGNORECASE,
)
REDACTED_PREFIX = "hmac-sha256:"


class Redactor:
    """Replaces sensitive payload values by ``hmac-sha256:<hex>`` under one key.

    A value is sensitive when its key's name says so (password, token, secret, api key,
    credential, authorization, private key), at any depth, or when the caller marks the key.

    Args:
        key: the HMAC key (at least 32 bytes).
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the redaction key must be at least 32 bytes")
        self._key = key

    def fingerprint(self, value: Any) -> str:
        """The redacted form of ``value``: what the trail stores in its place."""
        data = value.encode() if isinstance(value, str) else canonical_json(value)
        return REDACTED_PREFIX + hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def redact(
        self, payload: Mapping[str, Any], sensitive: Iterable[str] = ()
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The payload with sensitive values replaced, and the dotted paths replaced (sorted)."""
        marked = frozenset(sensitive)
        paths: list[str] = []
        redacted = self._walk(payload, "", marked, paths)
        return redacted, tuple(sorted(paths))

    def _walk(
        self, value: Mapping[str, Any], prefix: str, marked: frozenset[str], paths: list[str]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"payload keys must be strings, not {type(key).__name__}")
            path = f"{prefix}{key}"
            if key in marked or path in marked or _SENSITIVE_NAME.search(key):
                out[key] = self.fingerprint(item)
                paths.append(path)
            elif isinstance(item, Mapping):
                out[key] = self._walk(item, f"{path}.", marked, paths)
            else:
                out[key] = item
        return out
