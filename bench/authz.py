"""Authorization decisions per second: plain pycasbin against govplane's PolicyEngine.

Builds a synthetic RBAC-with-domains bundle in a temporary folder (by default 10,000 users in 100
roles, 1,000 policy lines over 8 domains, with role inheritance, deny lines and ABAC conditions),
draws a pool of distinct requests and a realistic stream that repeats them (a few hot requests,
a long tail), then measures in one run, on the same requests:

- plain pycasbin (``enforce_ex``, the model's own enforcer) once per distinct request, since it
  takes milliseconds per decision;
- the engine without caches (every decision computed: roles, candidate lines, conditions);
- the engine with its caches, from cold, over the whole stream.

Every decision the engine takes, in both modes, is checked against plain pycasbin's decision for
that request (allowed and deciding rule); any difference fails the run with exit status 1.

Run: ``.venv/bin/python bench/authz.py [--users 10000 --roles 100 --lines 1000 --requests N]``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import _rows

from policies import (
    DEFAULT_BUNDLE_DIR,
    AuthzRequest,
    CasbinReference,
    Decision,
    PolicyBundle,
    PolicyEngine,
    RoleAssignment,
    load_bundle,
)

DOMAINS = ("retail", "health", "finance", "insurance", "energy", "public", "research", "hr")
OBJECT_TYPES = ("dataset", "model", "run", "approval", "site", "lineage", "privacy_budget")
ACTIONS = ("read", "list", "create", "update", "train", "evaluate", "promote", "deploy", "approve")
CLASSIFICATIONS = ("public", "internal", "confidential", "restricted")
CONDITIONS = (
    "true",
    "true",
    "true",
    "level(r.attrs.clearance) >= level(r.attrs.classification)",
    "r.attrs.owner == r.sub",
    "r.attrs.purpose in ('training', 'evaluation')",
    "r.attrs.risk_tier != 'high' && r.attrs.classification != 'restricted'",
    "r.attrs.classification == 'restricted' || r.attrs.purpose == 'marketing'",
)
IDS = 50

T = TypeVar("T")


@dataclass(frozen=True)
class Workload:
    """A bundle, its role assignments, distinct requests, and a stream of their indexes."""

    bundle: PolicyBundle
    assignments: tuple[RoleAssignment, ...]
    pool: tuple[AuthzRequest, ...]
    stream: tuple[int, ...]


@dataclass(frozen=True)
class Measurement:
    """Latencies of one way of deciding (microseconds), with the requests it decided."""

    label: str
    latencies_us: tuple[float, ...]
    indexes: tuple[int, ...]

    @property
    def per_second(self) -> float:
        return len(self.latencies_us) / (sum(self.latencies_us) / 1e6)


@dataclass(frozen=True)
class _Line:
    role: str
    domain: str
    obj: str
    action: str


def _lines(rng: random.Random, roles: Sequence[str], count: int) -> list[_Line]:
    lines: dict[_Line, None] = {}
    while len(lines) < count:
        kind = rng.choice(OBJECT_TYPES)
        obj = rng.choice((f"{kind}:*", f"{kind}:*", f"{kind}:{rng.randrange(IDS)}", "*"))
        line = _Line(
            rng.choice(roles), rng.choice(("*", "*", *DOMAINS)), obj, rng.choice((*ACTIONS, "*"))
        )
        lines[line] = None
    return list(lines)


def _policy_csv(rng: random.Random, roles: Sequence[str], lines: Sequence[_Line]) -> str:
    rows = ["# synthetic bundle for bench/authz.py"]
    for index, role in enumerate(roles[1:], start=1):
        if rng.random() < 0.3:
            parent = roles[rng.randrange(index)]
            rows.append(f"g, {role}, {parent}, {rng.choice(('*', *DOMAINS))}")
    for line in lines:
        effect = "deny" if rng.random() < 0.1 else "allow"
        condition = rng.choice(CONDITIONS)
        rows.append(
            f"p, {line.role}, {line.domain}, {line.obj}, {line.action}, {effect}, {condition}"
        )
    return "\n".join(rows) + "\n"


def _request(
    rng: random.Random,
    users: Sequence[str],
    assignments: Sequence[RoleAssignment],
    lines_by_role: dict[str, list[_Line]],
) -> AuthzRequest:
    """Mostly a request some line of the subject's role is about; sometimes a random one."""
    held = rng.choice(assignments)
    domain = held.domain if held.domain != "*" else rng.choice(DOMAINS)
    kind = rng.choice(OBJECT_TYPES)
    obj, action = f"{kind}:{rng.randrange(IDS)}", rng.choice(ACTIONS)
    candidates = lines_by_role.get(held.role)
    if candidates and rng.random() < 0.9:
        line = rng.choice(candidates)
        if line.obj.endswith(":*"):
            obj = f"{line.obj[:-1]}{rng.randrange(IDS)}"
        elif line.obj != "*":
            obj = line.obj
        action = line.action if line.action != "*" else action
    attributes: dict[str, str | int | float | bool] = {
        "clearance": rng.choice(CLASSIFICATIONS),
        "classification": rng.choice(CLASSIFICATIONS),
        "purpose": rng.choice(("training", "evaluation", "marketing")),
        "risk_tier": rng.choice(("low", "medium", "high")),
        "owner": rng.choice((held.subject, rng.choice(users))),
    }
    for name in rng.sample(sorted(attributes), rng.randrange(2)):
        del attributes[name]
    return AuthzRequest(held.subject, domain, obj, action, attributes)


def build_workload(args: argparse.Namespace, folder: Path) -> Workload:
    """The synthetic bundle (written to ``folder`` and loaded from it) and the requests."""
    rng = random.Random(args.seed)
    roles = [f"role{index:03d}" for index in range(args.roles)]
    users = [f"user{index:05d}" for index in range(args.users)]
    lines = _lines(rng, roles, args.lines)
    for name in ("model.conf", "gates.yaml", "privacy.yaml", "maturity.yaml"):
        shutil.copy(DEFAULT_BUNDLE_DIR / name, folder / name)
    (folder / "approvals.yaml").write_text(
        "stages: {}\npolicy_change: {approvers: 1, roles: [role000]}\n"
    )
    (folder / "policy.csv").write_text(_policy_csv(rng, roles, lines))
    bundle = load_bundle(folder)
    assignments = [
        RoleAssignment(user, rng.choice(roles), "*" if rng.random() < 0.05 else rng.choice(DOMAINS))
        for user in users
    ]
    lines_by_role: dict[str, list[_Line]] = {}
    for line in lines:
        lines_by_role.setdefault(line.role, []).append(line)
    pool = tuple(_request(rng, users, assignments, lines_by_role) for _ in range(args.distinct))
    # A realistic mix: a few hot requests and a long tail (Zipf-like weights).
    weights = [1 / (rank + 1) for rank in range(len(pool))]
    stream = tuple(rng.choices(range(len(pool)), weights=weights, k=args.requests))
    return Workload(bundle, tuple(assignments), pool, stream)


def _timed(
    label: str, decide: Callable[[AuthzRequest], T], workload: Workload, indexes: Sequence[int]
) -> tuple[Measurement, list[T]]:
    latencies = []
    answers = []
    clock = time.perf_counter_ns
    for index in indexes:
        request = workload.pool[index]
        start = clock()
        answer = decide(request)
        latencies.append((clock() - start) / 1000)
        answers.append(answer)
    return Measurement(label, tuple(latencies), tuple(indexes)), answers


def measure_plain_casbin(
    workload: Workload, reference: CasbinReference
) -> tuple[Measurement, list[Decision]]:
    """Plain pycasbin's own ``enforce_ex`` on each distinct request, and its decisions.

    pycasbin builds a role manager per domain on first use; one untimed request per domain
    warms them up, as the engine's indexes are built before it is timed. The deciding allow
    line, which ``enforce_ex`` does not report, is looked up afterwards, untimed.
    """
    for domain in DOMAINS:
        reference.enforce(AuthzRequest(workload.pool[0].subject, domain, "*", "read"))
    measurement, answers = _timed(
        "plain pycasbin", reference.enforce, workload, range(len(workload.pool))
    )
    expected = [
        reference.explain(request, allowed, explained)
        for request, (allowed, explained) in zip(workload.pool, answers, strict=True)
    ]
    return measurement, expected


def measure_engine(workload: Workload, *, cached: bool) -> tuple[Measurement, list[Decision]]:
    """The engine over the whole stream, from cold, with or without its caches."""
    engine = PolicyEngine(workload.bundle, workload.assignments, cache_size=65_536 if cached else 0)
    label = "PolicyEngine, cached" if cached else "PolicyEngine, uncached"
    return _timed(label, engine.decide, workload, workload.stream)


def mismatches(
    measurement: Measurement, decisions: Sequence[Decision], expected: Sequence[Decision]
) -> list[str]:
    """The decisions of a measurement that differ from plain pycasbin's."""
    return [
        f"{measurement.label}: request {index}: got {got}, plain pycasbin {expected[index]}"
        for index, got in zip(measurement.indexes, decisions, strict=True)
        if got != expected[index]
    ]


def print_table(rows: Sequence[Measurement], baseline: Measurement) -> None:
    """Decisions/s, p50 and p99 latency, and the speed-up over plain pycasbin."""
    header = (
        f"{'':<26}{'decisions':>11}{'decisions/s':>14}{'p50 µs':>11}{'p99 µs':>12}{'vs plain':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        cuts = statistics.quantiles(row.latencies_us, n=100, method="inclusive")
        print(
            f"{row.label:<26}{len(row.latencies_us):>11,}{row.per_second:>14,.0f}"
            f"{cuts[49]:>11,.1f}{cuts[98]:>12,.1f}{row.per_second / baseline.per_second:>10,.0f}"
        )


def figures(plain: Measurement, engines: Sequence[Measurement]) -> list[dict[str, object]]:
    """The figures in the shared row format: throughput and p99 next to plain pycasbin's."""

    def p99(measurement: Measurement) -> float:
        return statistics.quantiles(measurement.latencies_us, n=100, method="inclusive")[98]

    found = []
    for engine in engines:
        found.append(
            _rows.row(engine.label, engine.per_second, "decisions/s", plain.per_second, plain.label)
        )
        found.append(_rows.row(f"{engine.label} p99", p99(engine), "µs", p99(plain), plain.label))
    return found


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--roles", type=int, default=100)
    parser.add_argument("--lines", type=int, default=1_000, help="policy lines")
    parser.add_argument("--requests", type=int, default=200_000, help="engine decisions")
    parser.add_argument(
        "--distinct", type=int, default=300, help="distinct requests (plain pycasbin decides each)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="end with the rows as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    with tempfile.TemporaryDirectory(prefix="govplane-bench-") as folder:
        started = time.perf_counter()
        workload = build_workload(args, Path(folder))
        print(
            f"{args.lines:,} policy lines, {len(workload.bundle.roles)} roles, "
            f"{len(workload.assignments):,} role assignments of {args.users:,} users, "
            f"{len(DOMAINS)} domains; {args.distinct:,} distinct requests in a stream of "
            f"{args.requests:,} (built in {time.perf_counter() - started:.1f} s)\n"
        )
    reference = CasbinReference(workload.bundle, workload.assignments)
    plain, expected = measure_plain_casbin(workload, reference)
    engines = [measure_engine(workload, cached=cached) for cached in (False, True)]

    print_table([plain, *(measurement for measurement, _ in engines)], plain)
    problems = [
        problem
        for measurement, decisions in engines
        for problem in mismatches(measurement, decisions, expected)
    ]
    allowed = sum(decision.allowed for decision in expected)
    print(
        f"\n{allowed} of {len(expected)} distinct requests allowed. Every engine decision "
        f"(allowed and deciding rule) compared with plain pycasbin: {len(problems)} differ."
    )
    for problem in problems[:10]:
        print(problem, file=sys.stderr)
    if args.json:
        _rows.emit(figures(plain, [measurement for measurement, _ in engines]))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
