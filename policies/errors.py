"""The error a policy bundle raises when it cannot be used."""

from __future__ import annotations


class BundleError(ValueError):
    """A bundle is invalid; the message names the file and the problem (and line, if known)."""
