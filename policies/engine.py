"""The authorization engine: casbin's decisions for govplane's model, fast enough for every request.

:class:`PolicyEngine` decides exactly as plain pycasbin does with the bundle's model (allowed and
deciding rule alike; the property tests compare them on random and generated bundles) but
prepares the work once instead of per request:

- roles: a subject's roles in a domain are the links reachable from it through role assignments
  and ``g`` lines held in that domain or in ``*``, at most 9 links deep like casbin's role
  manager (the subject itself included, since casbin's ``g(x, x)`` holds);
- rules: policy lines are indexed by (role, domain, action), conditions are compiled once, and
  each line's decision is built once;
- memory: roles and candidate lines per (subject, domain, action), and whole decisions per
  request (attributes included), are kept in bounded LRU caches.

Any change (a bundle, an assignment) builds a new immutable snapshot with empty caches and swaps
it in; a decision in flight finishes on the snapshot it started with. Decisions are safe to take
from many threads.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from policies.bundle import PolicyBundle
from policies.conditions import Condition
from policies.decisions import DEFAULT_DENY, AuthzRequest, Decision, RoleAssignment, Scalar
from policies.rules import PolicyRule

_MAX_LINK_DEPTH: Final = 9  # casbin's role manager follows at most 9 links (hierarchy level 10)
_Link = tuple[str, str, str]  # member, role, domain
_AttributesKey = frozenset[tuple[str, type[object], Scalar]]


@dataclass(frozen=True)
class _IndexedRule:
    """A policy line ready to match: its position, object test, condition and decision."""

    position: int
    matches_object: Callable[[str], bool]
    holds: Condition
    decision: Decision


_Candidates = tuple[tuple[_IndexedRule, ...], tuple[_IndexedRule, ...]]
"""The deny lines and the allow lines that may decide a request, each in policy order."""


def _object_test(pattern: str) -> Callable[[str], bool]:
    """A fast form of :func:`policies.rules.object_matches` for one pattern."""
    if pattern == "*":
        return lambda _obj: True
    if pattern.endswith(":*"):
        prefix = pattern[:-1]
        shortest = len(prefix) + 1
        return lambda obj: obj.startswith(prefix) and len(obj) >= shortest
    return lambda obj: obj == pattern


class _RuleIndex:
    """A bundle's policy lines indexed by (role, domain pattern, action pattern)."""

    def __init__(self, bundle: PolicyBundle) -> None:
        self.bundle = bundle
        self.default_deny = Decision(False, DEFAULT_DENY, bundle.version)
        self._by_key: dict[tuple[str, str, str], list[_IndexedRule]] = {}
        for position, rule in enumerate(bundle.policy.rules):
            self._by_key.setdefault((rule.role, rule.domain, rule.action), []).append(
                _indexed(position, rule, bundle.version)
            )

    def candidates(self, roles: Iterable[str], domain: str, action: str) -> _Candidates:
        """The deny lines and the allow lines that may apply, each in policy order."""
        domains = {domain, "*"}
        actions = {action, "*"}
        found = [
            rule
            for role in roles
            for rule_domain in domains
            for rule_action in actions
            for rule in self._by_key.get((role, rule_domain, rule_action), ())
        ]
        found.sort(key=lambda rule: rule.position)
        return (
            tuple(rule for rule in found if not rule.decision.allowed),
            tuple(rule for rule in found if rule.decision.allowed),
        )


def _indexed(position: int, rule: PolicyRule, version: str) -> _IndexedRule:
    decision = Decision(rule.effect == "allow", rule.text, version)
    return _IndexedRule(position, _object_test(rule.object), rule.holds, decision)


class _RoleGraph:
    """Who holds which role where: ``g`` lines and role assignments, as member -> links."""

    def __init__(self, bundle_links: frozenset[_Link], links: Mapping[str, frozenset[_Link]]):
        self._bundle_links = bundle_links
        self._links = links

    @classmethod
    def build(cls, bundle: PolicyBundle, assignments: Iterable[RoleAssignment]) -> _RoleGraph:
        bundle_links = frozenset(
            (link.member, link.role, link.domain) for link in bundle.policy.links
        )
        links: dict[str, set[_Link]] = {}
        for link in bundle_links:
            links.setdefault(link[0], set()).add(link)
        for a in assignments:
            links.setdefault(a.subject, set()).add((a.subject, a.role, a.domain))
        return cls(bundle_links, {member: frozenset(held) for member, held in links.items()})

    def with_link(self, link: _Link) -> _RoleGraph:
        links = dict(self._links)
        links[link[0]] = links.get(link[0], frozenset()) | {link}
        return _RoleGraph(self._bundle_links, links)

    def without_link(self, link: _Link) -> _RoleGraph:
        if link in self._bundle_links:
            return self
        links = dict(self._links)
        links[link[0]] = links.get(link[0], frozenset()) - {link}
        return _RoleGraph(self._bundle_links, links)

    def roles_of(self, subject: str, domain: str) -> tuple[str, ...]:
        """The subject and every role it reaches in ``domain``, breadth first."""
        reached = {subject}
        frontier = [subject]
        for _ in range(_MAX_LINK_DEPTH):
            following = [
                role
                for member in frontier
                for _, role, link_domain in self._links.get(member, ())
                if link_domain in (domain, "*") and role not in reached
            ]
            if not following:
                break
            reached.update(following)
            frontier = list(dict.fromkeys(following))
        return tuple(reached)


class _Snapshot:
    """One immutable state of the engine with its caches."""

    def __init__(self, index: _RuleIndex, graph: _RoleGraph, cache_size: int) -> None:
        self.index = index
        self.graph = graph
        self._candidates: Callable[[str, str, str], _Candidates]
        self._cached: Callable[[tuple[str, str, str, str, _AttributesKey]], Decision] | None
        if cache_size:
            self._candidates = functools.lru_cache(maxsize=cache_size)(self._find_candidates)
            self._cached = functools.lru_cache(maxsize=cache_size)(self._decide_key)
        else:
            self._candidates = self._find_candidates
            self._cached = None

    def decide(self, request: AuthzRequest) -> Decision:
        if self._cached is None:
            return self._evaluate(request)
        try:
            attributes = frozenset(
                (name, type(value), value) for name, value in request.attributes.items()
            )
            return self._cached(
                (request.subject, request.domain, request.object, request.action, attributes)
            )
        except TypeError:  # an unhashable attribute value: decide without the cache
            return self._evaluate(request)

    def _decide_key(self, key: tuple[str, str, str, str, _AttributesKey]) -> Decision:
        subject, domain, obj, action, attributes = key
        values = {name: value for name, _, value in attributes}
        return self._evaluate(AuthzRequest(subject, domain, obj, action, values))

    def _find_candidates(self, subject: str, domain: str, action: str) -> _Candidates:
        return self.index.candidates(self.graph.roles_of(subject, domain), domain, action)

    def _evaluate(self, request: AuthzRequest) -> Decision:
        denies, allows = self._candidates(request.subject, request.domain, request.action)
        obj = request.object
        for rule in denies:
            if rule.matches_object(obj) and rule.holds(request):
                return rule.decision
        for rule in allows:
            if rule.matches_object(obj) and rule.holds(request):
                return rule.decision
        return self.index.default_deny


class PolicyEngine:
    """Decides authorization requests with a bundle and role assignments.

    Args:
        bundle: the policy bundle in force.
        assignments: who holds which role in which domain.
        cache_size: the bound of each LRU cache (decisions, candidate lines); 0 disables them.
    """

    def __init__(
        self,
        bundle: PolicyBundle,
        assignments: Iterable[RoleAssignment] = (),
        *,
        cache_size: int = 65_536,
    ) -> None:
        self._lock = threading.Lock()
        self._cache_size = cache_size
        self._assignments = dict.fromkeys(assignments)
        self._snapshot = _Snapshot(
            _RuleIndex(bundle), _RoleGraph.build(bundle, self._assignments), cache_size
        )

    @property
    def bundle(self) -> PolicyBundle:
        """The bundle in force."""
        return self._snapshot.index.bundle

    def decide(self, request: AuthzRequest) -> Decision:
        """The decision on ``request``, identical to plain pycasbin's."""
        return self._snapshot.decide(request)

    def roles_of(self, subject: str, domain: str) -> frozenset[str]:
        """The roles ``subject`` holds in ``domain``, assigned or inherited."""
        return frozenset(self._snapshot.graph.roles_of(subject, domain)) - {subject}

    def use_bundle(self, bundle: PolicyBundle) -> None:
        """Decide with ``bundle`` from now on, keeping the role assignments."""
        with self._lock:
            graph = _RoleGraph.build(bundle, self._assignments)
            self._swap(_RuleIndex(bundle), graph)

    def replace_assignments(self, assignments: Iterable[RoleAssignment]) -> None:
        """Replace every role assignment."""
        with self._lock:
            self._assignments = dict.fromkeys(assignments)
            self._swap(self._snapshot.index, _RoleGraph.build(self.bundle, self._assignments))

    def add_assignment(self, assignment: RoleAssignment) -> None:
        """Add one role assignment (no change if it is already there)."""
        with self._lock:
            if assignment in self._assignments:
                return
            self._assignments[assignment] = None
            graph = self._snapshot.graph.with_link(_link(assignment))
            self._swap(self._snapshot.index, graph)

    def remove_assignment(self, assignment: RoleAssignment) -> None:
        """Remove one role assignment (no change if it is not there)."""
        with self._lock:
            if assignment not in self._assignments:
                return
            del self._assignments[assignment]
            graph = self._snapshot.graph.without_link(_link(assignment))
            self._swap(self._snapshot.index, graph)

    def _swap(self, index: _RuleIndex, graph: _RoleGraph) -> None:
        self._snapshot = _Snapshot(index, graph, self._cache_size)


def _link(assignment: RoleAssignment) -> _Link:
    return (assignment.subject, assignment.role, assignment.domain)
