"""Plain pycasbin: govplane's casbin model, the enforcer built from a bundle, and its decisions.

Every bundle's ``model.conf`` must be this model (comments and spacing aside), because it is
the one :class:`policies.PolicyEngine` implements::

    [request_definition]
    r = sub, dom, obj, act, attrs

    [policy_definition]
    p = sub, dom, obj, act, eft, cond

    [role_definition]
    g = _, _, _

    [policy_effect]
    e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

    [matchers]
    m = g(r.sub, p.sub, r.dom) && domainMatch(r.dom, p.dom) && objectMatch(r.obj, p.obj) \\
        && (p.act == "*" || r.act == p.act) && eval(p.cond)

An enforcer for it registers ``domainMatch`` and ``objectMatch``
(:func:`policies.rules.domain_matches`, :func:`policies.rules.object_matches`), the condition
functions (:data:`policies.conditions.CASBIN_FUNCTIONS`), and ``domainMatch`` as the domain
matching function of ``g`` so that a role held in domain ``*`` is held in every domain. Requests
pass their attributes as an :class:`policies.conditions.AttributeView`.

pycasbin reports the deny line that decided a denial but not which allow line allowed a request;
:class:`CasbinReference` asks a second enforcer, whose effect stops at the first allow, for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

import casbin
from casbin.persist.adapters.string_adapter import StringAdapter

from policies.conditions import CASBIN_FUNCTIONS, AttributeView
from policies.decisions import DEFAULT_DENY, AuthzRequest, Decision, RoleAssignment
from policies.errors import BundleError
from policies.rules import PolicyTable, domain_matches, object_matches

if TYPE_CHECKING:
    from policies.bundle import PolicyBundle

MODEL_CONF: Final = """\
[request_definition]
r = sub, dom, obj, act, attrs

[policy_definition]
p = sub, dom, obj, act, eft, cond

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub, r.dom) && domainMatch(r.dom, p.dom) && objectMatch(r.obj, p.obj) \\
  && (p.act == "*" || r.act == p.act) && eval(p.cond)
"""
"""govplane's casbin model, the one every bundle's ``model.conf`` must be."""

_FIRST_ALLOW_EFFECT: Final = "some(where (p.eft == allow))"
_SECTIONS: Final = {
    "r": "[request_definition] r",
    "p": "[policy_definition] p",
    "g": "[role_definition] g",
    "e": "[policy_effect] e",
    "m": "[matchers] m",
}
_MATCHING_FUNCTIONS: Final = {"domainMatch": domain_matches, "objectMatch": object_matches}


def check_model(text: str) -> None:
    """Check that ``model.conf`` is govplane's model.

    Raises:
        BundleError: casbin cannot parse it, or it is another model.
    """
    try:
        found = _definitions(text)
    except Exception as exc:  # pycasbin raises bare RuntimeErrors and KeyErrors
        raise BundleError(f"model.conf: casbin cannot parse it: {exc}") from None
    expected = _definitions(MODEL_CONF)
    for key, title in _SECTIONS.items():
        if key not in found:
            raise BundleError(f"model.conf: {title} is missing")
        if _squeezed(found[key]) != _squeezed(expected[key]):
            raise BundleError(
                f"model.conf: {title} must be {expected[key]!r} (the model govplane's engine "
                f"implements), not {found[key]!r}"
            )
    extra = sorted(set(found) - set(_SECTIONS))
    if extra:
        raise BundleError(f"model.conf: unexpected definition {', '.join(extra)}")


def check_policy(model_conf: str, table: PolicyTable) -> None:
    """Load ``policy.csv`` into pycasbin and check that casbin reads every line as we do.

    One probe request makes casbin compile its matcher with every line's condition.

    Raises:
        BundleError: casbin cannot load or evaluate the policy, or reads it differently.
    """
    try:
        enforcer = load_enforcer(model_conf, table, ())
        enforcer.enforce_ex("", "", "", "", AttributeView({}))
    except Exception as exc:  # pycasbin raises bare RuntimeErrors, SyntaxErrors, ...
        raise BundleError(f"policy.csv: casbin cannot use it: {exc}") from None
    if enforcer.get_policy() != [list(rule.fields) for rule in table.rules] or (
        enforcer.get_grouping_policy()
        != [[link.member, link.role, link.domain] for link in table.links]
    ):
        raise BundleError("policy.csv: casbin reads the lines differently than govplane")


def load_enforcer(
    model_conf: str,
    table: PolicyTable,
    assignments: Iterable[RoleAssignment],
    effect: str | None = None,
) -> Any:
    """A pycasbin enforcer for govplane's model, a parsed ``policy.csv`` and role assignments.

    ``effect`` replaces the model's policy effect (the reference uses it to find the first
    matching allow line).
    """
    model = casbin.Enforcer.new_model(text=model_conf)
    if effect is not None:
        model.add_def("e", "e", effect)
    enforcer = casbin.Enforcer(model, StringAdapter("\n".join(table.lines)))
    for name, function in {**CASBIN_FUNCTIONS, **_MATCHING_FUNCTIONS}.items():
        enforcer.add_function(name, function)
    enforcer.add_named_domain_matching_func("g", domain_matches)
    groupings = [[a.subject, a.role, a.domain] for a in assignments]
    if groupings:
        enforcer.add_named_grouping_policies("g", groupings)
    return enforcer


def casbin_enforcer(
    bundle: PolicyBundle, assignments: Iterable[RoleAssignment] = ()
) -> casbin.Enforcer:
    """The plain pycasbin enforcer for a bundle and role assignments (not thread-safe)."""
    return load_enforcer(bundle.files["model.conf"], bundle.policy, assignments)


class CasbinReference:
    """Decisions of plain pycasbin, in the engine's terms: the reference the engine must match.

    Slow (pycasbin parses its matcher for every policy line of every request) and not
    thread-safe; for tests, policy cases and benchmarks.
    """

    def __init__(self, bundle: PolicyBundle, assignments: Iterable[RoleAssignment] = ()) -> None:
        assignments = list(assignments)
        model_conf = bundle.files["model.conf"]
        self.enforcer = casbin_enforcer(bundle, assignments)
        self._first_allow = load_enforcer(
            model_conf, bundle.policy, assignments, _FIRST_ALLOW_EFFECT
        )
        self._version = bundle.version

    def enforce(self, request: AuthzRequest) -> tuple[bool, list[str]]:
        """pycasbin's own answer (``enforce_ex``): allowed, and the deny line that denied."""
        allowed, explained = self.enforcer.enforce_ex(*_values(request))
        return bool(allowed), list(explained)

    def decide(self, request: AuthzRequest) -> Decision:
        """pycasbin's decision, with the deny line or the first allow line that decided it."""
        return self.explain(request, *self.enforce(request))

    def explain(self, request: AuthzRequest, allowed: bool, explained: list[str]) -> Decision:
        """The decision for pycasbin's answer to ``request``: its deny line, or else the first
        allow line (found with a second enforcer), or else the default deny."""
        if not allowed:
            rule = _line(explained) if explained else DEFAULT_DENY
            return Decision(allowed=False, rule=rule, bundle_version=self._version)
        _, first_allow = self._first_allow.enforce_ex(*_values(request))
        return Decision(allowed=True, rule=_line(first_allow), bundle_version=self._version)


def _values(request: AuthzRequest) -> tuple[str, str, str, str, AttributeView]:
    return (
        request.subject,
        request.domain,
        request.object,
        request.action,
        AttributeView(request.attributes),
    )


def _definitions(text: str) -> dict[str, str]:
    """The definitions of a casbin model text, keyed ``r``, ``p``, ``g``, ``e``, ``m``, ..."""
    model = casbin.Enforcer.new_model(text=text)
    return {
        key: assertion.value for section in model.values() for key, assertion in section.items()
    }


def _squeezed(value: str) -> str:
    return re.sub(r"\s+", "", value)


def _line(fields: list[str]) -> str:
    return "p, " + ", ".join(fields)
