"""What authorization is asked and what it answers: requests, role assignments, decisions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

Scalar = str | int | float | bool
"""An attribute value conditions can compare."""

DEFAULT_DENY: Final = "default deny: no rule allows"
"""The rule of a decision no policy line allowed."""


@dataclass(frozen=True)
class RoleAssignment:
    """``subject`` holds ``role`` in ``domain`` (``*``: in every domain)."""

    subject: str
    role: str
    domain: str


@dataclass(frozen=True)
class AuthzRequest:
    """May ``subject`` do ``action`` on ``object`` in ``domain``, given ``attributes``?

    Attributes describe the subject (``clearance``), the resource (``classification``,
    ``risk_tier``, ``owner``) and the request (``purpose``); conditions read them by name.
    """

    subject: str
    domain: str
    object: str
    action: str
    attributes: Mapping[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The answer, with the deciding policy line and the bundle that decided.

    ``rule`` is the matched deny line if any matched, else the first matched allow line, as
    ``"p, role, domain, object, action, effect, condition"``, else :data:`DEFAULT_DENY`.
    """

    allowed: bool
    rule: str
    bundle_version: str
