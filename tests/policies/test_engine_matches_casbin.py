"""The engine decides exactly as plain pycasbin on generated bundles, before and after changes.

Bundles, role assignments and requests are drawn by hypothesis from a small vocabulary, so that
role inheritance, domain wildcards, object prefixes, deny lines and attribute conditions collide
often. Every decision (allowed and deciding rule) is compared with :class:`CasbinReference`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import (
    DEFAULT_BUNDLE_DIR,
    AuthzRequest,
    CasbinReference,
    PolicyBundle,
    PolicyEngine,
    RoleAssignment,
    load_bundle,
)

ROLES = ("data_scientist", "ml_engineer", "model_validator", "risk_officer")
# approvals.yaml names these roles, so every generated bundle defines them
APPROVERS = [
    "p, model_validator, *, approval:*, read, allow, true",
    "p, risk_officer, *, approval:*, read, allow, true",
]
SUBJECTS = ("ann", "bob", "cy")
DOMAINS = ("retail", "health")
OBJECTS = ("dataset:a", "dataset:ab", "datasets:a", "model:", "model:1", "model:10")
PATTERNS = ("*", "dataset:*", "model:*", "dataset:a", "model:1")
ACTIONS = ("read", "train", "deploy")
CONDITIONS = (
    "true",
    "false",
    "level(r.attrs.clearance) >= level(r.attrs.classification)",
    "r.attrs.owner == r.sub",
    "r.attrs.purpose in ('training', 'audit')",
    "r.attrs.risk_tier != 'high' && r.attrs.classification != 'restricted'",
    "r.attrs.classification == 'restricted' || r.attrs.purpose == 'marketing'",
    "r.attrs.epsilon <= 3",
)
ATTRIBUTES = {
    "clearance": st.sampled_from(("public", "internal", "restricted", "unknown")),
    "classification": st.sampled_from(("public", "internal", "confidential", "restricted")),
    "owner": st.sampled_from(SUBJECTS),
    "purpose": st.sampled_from(("training", "audit", "marketing")),
    "risk_tier": st.sampled_from(("low", "high")),
    "epsilon": st.one_of(st.integers(0, 6), st.floats(0, 6), st.just("3")),
}
_TEMPLATE = load_bundle(DEFAULT_BUNDLE_DIR).files


@dataclass(frozen=True)
class World:
    bundle: PolicyBundle
    assignments: tuple[RoleAssignment, ...]


def _bundle(p_lines: list[str], g_lines: list[str]) -> PolicyBundle:
    lines = g_lines + [line for line in p_lines if line not in APPROVERS] + APPROVERS
    return PolicyBundle.from_files({**_TEMPLATE, "policy.csv": "\n".join(lines) + "\n"})


p_line = st.builds(
    lambda role, domain, obj, action, effect, condition: (
        f"p, {role}, {domain}, {obj}, {action}, {effect}, {condition}"
    ),
    st.sampled_from(ROLES),
    st.sampled_from(("*", *DOMAINS)),
    st.sampled_from(PATTERNS),
    st.sampled_from(("*", *ACTIONS)),
    st.sampled_from(("allow", "allow", "deny")),
    st.sampled_from(CONDITIONS),
)
g_line = st.builds(
    lambda link, domain: f"g, {link[0]}, {link[1]}, {domain}",
    st.permutations(ROLES).map(lambda roles: roles[:2]),
    st.sampled_from(("*", *DOMAINS)),
)
assignment = st.builds(
    RoleAssignment,
    st.sampled_from(SUBJECTS),
    st.sampled_from(ROLES),
    st.sampled_from(("*", *DOMAINS)),
)
worlds = st.builds(
    lambda p, g, a: World(_bundle(p, g), tuple(a)),
    st.lists(p_line, min_size=1, max_size=12, unique=True),
    st.lists(g_line, max_size=4, unique=True),
    st.lists(assignment, max_size=6, unique=True),
)
requests = st.builds(
    AuthzRequest,
    st.sampled_from(SUBJECTS),
    st.sampled_from(DOMAINS),
    st.sampled_from(OBJECTS),
    st.sampled_from(ACTIONS),
    st.fixed_dictionaries({}, optional=ATTRIBUTES),
)
_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _assert_same(engine: PolicyEngine, world: World, batch: list[AuthzRequest]) -> None:
    reference = CasbinReference(world.bundle, world.assignments)
    for request in batch:
        assert engine.decide(request) == reference.decide(request), request


@_SETTINGS
@given(world=worlds, batch=st.lists(requests, min_size=1, max_size=15))
def test_engine_decides_as_casbin(world: World, batch: list[AuthzRequest]) -> None:
    # Twice: the second pass is answered from the engine's caches
    engine = PolicyEngine(world.bundle, world.assignments)
    _assert_same(engine, world, batch + batch)
    _assert_same(PolicyEngine(world.bundle, world.assignments, cache_size=0), world, batch)


@_SETTINGS
@given(
    world=worlds,
    batch=st.lists(requests, min_size=1, max_size=10),
    added=assignment,
    other=worlds,
)
def test_changes_invalidate_cached_decisions(
    world: World, batch: list[AuthzRequest], added: RoleAssignment, other: World
) -> None:
    # Given an engine that has cached decisions
    engine = PolicyEngine(world.bundle, world.assignments)
    _assert_same(engine, world, batch)
    # When an assignment is added, then removed, then the bundle is replaced
    engine.add_assignment(added)
    grown = World(world.bundle, tuple(dict.fromkeys((*world.assignments, added))))
    _assert_same(engine, grown, batch)
    engine.remove_assignment(added)
    shrunk = World(world.bundle, tuple(a for a in world.assignments if a != added))
    _assert_same(engine, shrunk, batch)
    engine.use_bundle(other.bundle)
    # Then every decision is plain casbin's for the state now in force
    _assert_same(engine, World(other.bundle, shrunk.assignments), batch)
