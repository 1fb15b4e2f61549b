"""``policy.csv``: policy lines, role inheritance lines, and how their patterns match.

One line per rule, fields separated by commas (commas inside brackets belong to the field, as in
pycasbin); blank lines and lines starting with ``#`` are ignored::

    p, ROLE, DOMAIN, OBJECT, ACTION, EFFECT, CONDITION
    g, ROLE, INHERITED_ROLE, DOMAIN

- ``DOMAIN`` is a domain name or ``*``. A ``p`` line applies where its role is held and its domain
  matches the request's; ``*`` matches every domain. A ``g`` line in domain ``*`` holds in every
  domain. Users get roles from role assignments, not from this file.
- ``OBJECT`` is an exact id (``model:credit``), ``TYPE:*`` (any id of that type) or ``*`` (any
  object). Matching is anchored: ``model:1`` does not match ``model:10``, and ``*`` stands only
  for a whole id, never for part of one.
- ``ACTION`` is a verb (``read``, ``approve``, a run kind such as ``train``) or ``*``.
- ``EFFECT`` is ``allow`` or ``deny``; a matching deny line overrides every allow line.
- ``CONDITION`` is an expression over the request (see :mod:`policies.conditions`); ``true``
  for none.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Final, Literal

from policies.conditions import Condition, compile_condition
from policies.errors import BundleError

Effect = Literal["allow", "deny"]

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")
_DOMAIN: Final = re.compile(r"\*|[A-Za-z0-9][A-Za-z0-9._-]*")
_OBJECT: Final = re.compile(r"\*|[a-z][a-z0-9_]*:(?:\*|[^*\s]+)")
_ACTION: Final = re.compile(r"\*|[a-z][a-z0-9_]*")
_EFFECTS: Final[dict[str, Effect]] = {"allow": "allow", "deny": "deny"}


def domain_matches(domain: str, pattern: str) -> bool:
    """Whether a request's ``domain`` is in a line's domain ``pattern`` (``*``: all)."""
    return pattern == "*" or domain == pattern


def object_matches(obj: str, pattern: str) -> bool:
    """Whether a request's object id is matched by a line's object ``pattern`` (anchored)."""
    if pattern == "*":
        return True
    if pattern.endswith(":*"):
        return len(obj) > len(pattern) - 1 and obj.startswith(pattern[:-1])
    return obj == pattern


@dataclass(frozen=True)
class PolicyRule:
    """A ``p`` line: ``role`` may (or may not) do ``action`` on ``object`` in ``domain``."""

    role: str
    domain: str
    object: str
    action: str
    effect: Effect
    condition: str
    holds: Condition = field(compare=False, repr=False)
    """The compiled condition."""

    @property
    def fields(self) -> tuple[str, ...]:
        """The line's fields after ``p``, as casbin stores them."""
        return (self.role, self.domain, self.object, self.action, self.effect, self.condition)

    @property
    def text(self) -> str:
        """The line as policy text: ``p, role, domain, object, action, effect, condition``."""
        return "p, " + ", ".join(self.fields)


@dataclass(frozen=True)
class RoleLink:
    """A ``g`` line: ``member`` has every permission of ``role`` in ``domain``."""

    member: str
    role: str
    domain: str


@dataclass(frozen=True)
class PolicyTable:
    """The parsed ``policy.csv``, lines in file order."""

    rules: tuple[PolicyRule, ...]
    links: tuple[RoleLink, ...]
    lines: tuple[str, ...]
    """The meaningful lines, stripped, as a casbin adapter should read them."""

    @functools.cached_property
    def roles(self) -> frozenset[str]:
        """Every role the table names: subjects of ``p`` lines and both sides of ``g`` lines."""
        return frozenset(
            [rule.role for rule in self.rules]
            + [name for link in self.links for name in (link.member, link.role)]
        )


def parse_policy_csv(text: str) -> PolicyTable:
    """Parse and validate ``policy.csv``.

    Raises:
        BundleError: a line is malformed; the message names the line and the problem.
    """
    rules: list[PolicyRule] = []
    links: list[RoleLink] = []
    lines: list[str] = []
    seen: dict[tuple[str, ...], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            tokens = _tokens(line)
            key = tuple(tokens)
            if key in seen:
                raise ValueError(f"repeats line {seen[key]}")
            seen[key] = number
            if tokens[0] == "p":
                rules.append(_rule(tokens[1:]))
            elif tokens[0] == "g":
                links.append(_link(tokens[1:]))
            else:
                raise ValueError(
                    f"unknown line type {tokens[0]!r}: policy.csv holds p (policy) and "
                    "g (role inheritance) lines"
                )
        except ValueError as exc:
            raise BundleError(f"policy.csv line {number}: {exc}") from None
        lines.append(line)
    if not rules:
        raise BundleError("policy.csv: there is no p line, so nothing would ever be allowed")
    return PolicyTable(tuple(rules), tuple(links), tuple(lines))


def _tokens(line: str) -> list[str]:
    """Split a line on commas outside brackets, as pycasbin's ``load_policy_line`` does."""
    tokens = [""]
    depth = 0
    for char in line:
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced {char!r}")
        elif char == "," and depth == 0:
            tokens.append("")
            continue
        tokens[-1] += char
    if depth:
        raise ValueError("unbalanced brackets")
    return [token.strip() for token in tokens]


def _rule(fields: list[str]) -> PolicyRule:
    if len(fields) != 6:
        raise ValueError(
            f"a p line has 6 fields (role, domain, object, action, effect, condition), "
            f"this one has {len(fields)}"
        )
    role, domain, obj, action, effect, condition = fields
    _check("role", role, _NAME)
    _check("domain", domain, _DOMAIN)
    if not _OBJECT.fullmatch(obj):
        hint = " ('*' stands for a whole id, as in 'dataset:*', or for any object)"
        raise ValueError(f"invalid object pattern {obj!r}{hint if '*' in obj else ''}")
    _check("action", action, _ACTION)
    if effect not in _EFFECTS:
        raise ValueError(f"the effect must be allow or deny, not {effect!r}")
    return PolicyRule(
        role, domain, obj, action, _EFFECTS[effect], condition, compile_condition(condition)
    )


def _link(fields: list[str]) -> RoleLink:
    if len(fields) != 3:
        raise ValueError(
            f"a g line has 3 fields (role, inherited role, domain), this one has {len(fields)}"
        )
    member, role, domain = fields
    _check("role", member, _NAME)
    _check("inherited role", role, _NAME)
    _check("domain", domain, _DOMAIN)
    if member == role:
        raise ValueError(f"role {role!r} cannot inherit itself")
    return RoleLink(member, role, domain)


def _check(what: str, value: str, pattern: re.Pattern[str]) -> None:
    if not pattern.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}")
