"""Policy cases: expected decisions, kept as data next to the policy they test.

A case file is YAML::

    assignments:                      # who holds which role where, for these cases only
      - {subject: alice, role: data_scientist, domain: retail}
    cases:
      - name: a data scientist reads data within her clearance
        subject: alice
        domain: retail
        object: dataset:adult
        action: read
        attributes: {classification: internal, clearance: internal}
        want: allow                   # or deny
        rule: "p, data_scientist, ..."    # optional: the line that must decide

:func:`run_cases` decides every case with :class:`policies.PolicyEngine` and with plain pycasbin,
and reports a case whose decision is not the wanted one or on which the two disagree. The same
files are replayed against the HTTP API, so each file is self-contained.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from policies.bundle import PolicyBundle
from policies.decisions import AuthzRequest, RoleAssignment, Scalar
from policies.documents import Document, parse_document
from policies.engine import PolicyEngine
from policies.reference import CasbinReference


class _Assignment(Document):
    subject: str
    role: str
    domain: str


class _Case(Document):
    name: str = Field(min_length=1)
    subject: str
    domain: str
    object: str
    action: str
    attributes: dict[str, Scalar] = {}
    want: Literal["allow", "deny"]
    rule: str | None = None


class _CaseFileModel(Document):
    assignments: tuple[_Assignment, ...] = ()
    cases: tuple[_Case, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> _CaseFileModel:
        names = [case.name for case in self.cases]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"case names must be unique: {', '.join(map(repr, repeated))}")
        return self


@dataclass(frozen=True)
class PolicyCase:
    """One request and the decision it must get."""

    name: str
    request: AuthzRequest
    want_allowed: bool
    rule: str | None
    """The deciding rule the case expects, if it names one."""


@dataclass(frozen=True)
class CaseFile:
    """The cases of one file with the role assignments they assume."""

    path: Path
    assignments: tuple[RoleAssignment, ...]
    cases: tuple[PolicyCase, ...]


@dataclass(frozen=True)
class CaseFailure:
    """A case that did not get its decision, and what happened instead."""

    path: Path
    case: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path.name}: {self.case}: {self.problem}"


def load_cases(path: Path) -> list[CaseFile]:
    """The case files at ``path``: one ``.yaml`` file, or every one in a folder, sorted.

    Raises:
        ValueError: a file is not a valid case file; the message names the file and line.
        OSError: a file cannot be read.
    """
    paths = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not paths:
        raise ValueError(f"{path}: no case files (*.yaml)")
    return [_load(case_path) for case_path in paths]


def _load(path: Path) -> CaseFile:
    model = parse_document(str(path), path.read_text(encoding="utf-8"), _CaseFileModel)
    return CaseFile(
        path=path,
        assignments=tuple(RoleAssignment(a.subject, a.role, a.domain) for a in model.assignments),
        cases=tuple(
            PolicyCase(
                name=case.name,
                request=AuthzRequest(
                    case.subject, case.domain, case.object, case.action, case.attributes
                ),
                want_allowed=case.want == "allow",
                rule=case.rule,
            )
            for case in model.cases
        ),
    )


def run_cases(bundle: PolicyBundle, case_files: Iterable[CaseFile]) -> list[CaseFailure]:
    """Decide every case with the engine and with plain pycasbin; the cases that fail."""
    failures = []
    for case_file in case_files:
        engine = PolicyEngine(bundle, case_file.assignments)
        reference = CasbinReference(bundle, case_file.assignments)
        for case in case_file.cases:
            problems = _problems(case, engine, reference)
            if problems:
                failures.append(CaseFailure(case_file.path, case.name, "; ".join(problems)))
    return failures


def _problems(case: PolicyCase, engine: PolicyEngine, reference: CasbinReference) -> list[str]:
    decision = engine.decide(case.request)
    problems = []
    if decision.allowed != case.want_allowed:
        want, got = ("allow", "deny") if case.want_allowed else ("deny", "allow")
        problems.append(f"want {want}, got {got} by {decision.rule!r}")
    if case.rule is not None and decision.rule != case.rule:
        problems.append(f"want rule {case.rule!r}, got {decision.rule!r}")
    expected = reference.decide(case.request)
    if decision != expected:
        problems.append(
            f"plain casbin disagrees: {'allow' if expected.allowed else 'deny'} "
            f"by {expected.rule!r}"
        )
    return problems
