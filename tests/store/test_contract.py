"""The store contract: the same behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from control_plane.bundles import activate_bundle, active_bundle_row
from control_plane.identity.tokens import issue_token, principal_for_token
from control_plane.runs import RunEngine, RunKind, RunState
from control_plane.store import Database, new_id, utcnow
from control_plane.store.models import Dataset, PolicyBundleRow, Principal, Run, RunTransition
from control_plane.store.revisions import bump_revision, current_revision
from policies import DEFAULT_BUNDLE_DIR, PolicyBundle, load_bundle


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def _principal(db: Database, name: str = "alice") -> str:
    with db.session(write=True) as session:
        principal = Principal(name=name, kind="user", attributes={"clearance": "internal"})
        session.add(principal)
        session.flush()
        return principal.id


def test_ids_sort_by_creation_time() -> None:
    # Given ids made a few milliseconds apart
    ids = []
    for _ in range(5):
        ids.append(new_id())
        time.sleep(0.002)
    # Then sorting them gives their creation order, and they are 32 hex digits
    assert sorted(ids) == ids
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_timestamps_come_back_timezone_aware_utc(db: Database) -> None:
    # Given a row written with an aware timestamp in another zone
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).astimezone()
    principal_id = _principal(db)
    with db.session(write=True) as session:
        session.get_one(Principal, principal_id).created_at = moment
    # When it is read back
    with db.session() as session:
        read = session.get_one(Principal, principal_id).created_at
    # Then it is the same instant, in UTC
    assert read == moment
    assert read.tzinfo is not None
    assert read.utcoffset() == timedelta(0)


def test_a_failed_transaction_leaves_nothing_behind(db: Database) -> None:
    # Given a principal named alice
    _principal(db)
    dataset = Dataset(
        name="d", domain="retail", owner="alice", classification="public", created_by="a"
    )

    def add_dataset_then_duplicate_principal() -> None:
        with db.session(write=True) as session:
            session.add(dataset)
            session.flush()
            session.add(Principal(name="alice", kind="user", attributes={}))
            session.flush()

    # When a transaction adds a dataset and then violates a unique constraint
    with pytest.raises(IntegrityError):
        add_dataset_then_duplicate_principal()
    # Then neither write is in the store
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Dataset)) == 0


def test_tokens_resolve_only_while_valid(db: Database) -> None:
    # Given a live token and an expired token for the same principal
    principal_id = _principal(db)
    with db.session(write=True) as session:
        live = issue_token(session, principal_id)
        expired = issue_token(session, principal_id, utcnow() - timedelta(seconds=1))
    # Then only the live one resolves, and unknown tokens do not
    with db.session() as session:
        assert principal_for_token(session, live) == principal_id
        assert principal_for_token(session, expired) is None
        assert principal_for_token(session, live + "x") is None


def test_tokens_are_stored_only_as_digests(db: Database) -> None:
    principal_id = _principal(db)
    with db.session(write=True) as session:
        token = issue_token(session, principal_id)
    with db.engine.connect() as connection:
        dump = " ".join(str(row) for row in connection.exec_driver_sql("SELECT * FROM api_tokens"))
    assert token not in dump


def test_one_bundle_is_active_and_activation_bumps_the_revision(db: Database) -> None:
    # Given the default bundle activated
    bundle = load_bundle(DEFAULT_BUNDLE_DIR)
    with db.session(write=True) as session:
        before = current_revision(session)
        assert activate_bundle(session, bundle, None)
    # When it is activated again
    with db.session(write=True) as session:
        again = activate_bundle(session, bundle, None)
        after = current_revision(session)
        active = active_bundle_row(session)
    # Then nothing changes the second time and the revision moved once
    assert again is False
    assert active is not None
    assert active.version == bundle.version
    assert before is not None
    assert after == before + 1


def test_concurrent_activations_leave_one_bundle_active(database_url: str) -> None:
    # Found by the replica race suite: two replicas activating policy changes at once each
    # superseded the same previous bundle, leaving several active
    files = dict(load_bundle(DEFAULT_BUNDLE_DIR).files)
    bundles = [
        PolicyBundle.from_files({**files, "policy.csv": files["policy.csv"] + f"# {i}\n"})
        for i in range(8)
    ]
    databases = [Database(database_url) for _ in bundles]
    barrier = threading.Barrier(len(bundles))

    def activate(database: Database, bundle: PolicyBundle) -> None:
        barrier.wait()
        with database.session(write=True) as session:
            activate_bundle(session, bundle, "worker")

    threads = [
        threading.Thread(target=activate, args=pair)
        for pair in zip(databases, bundles, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with databases[0].session() as session:
        statuses = session.scalars(select(PolicyBundleRow.status)).all()
    assert sorted(statuses) == ["active"] + ["superseded"] * (len(bundles) - 1)
    for database in databases:
        database.dispose()


def test_revision_counter_increments(db: Database) -> None:
    with db.session(write=True) as session:
        start = current_revision(session)
        bump_revision(session)
        bump_revision(session)
    with db.session() as session:
        assert current_revision(session) == (start or 0) + 2


def _pending_runs(db: Database, count: int) -> list[str]:
    with db.session(write=True) as session:
        runs = [
            Run(
                kind=RunKind.TRAIN,
                state=RunState.PENDING,
                domain="retail",
                target="model:m",
                bundle_version="sha256:x",
                submitted_by="alice",
            )
            for _ in range(count)
        ]
        session.add_all(runs)
        session.flush()
        return [run.id for run in runs]


def test_concurrent_workers_claim_each_run_exactly_once(database_url: str) -> None:
    # Given 30 pending runs and four workers, each with its own engine and connection pool
    setup = Database(database_url)
    run_ids = _pending_runs(setup, 30)
    databases = [Database(database_url) for _ in range(4)]
    engines = [RunEngine(database, {}) for database in databases]
    claims: dict[str, list[str]] = {f"w{i}": [] for i in range(4)}
    barrier = threading.Barrier(4)

    def work(worker: str, engine: RunEngine) -> None:
        barrier.wait()
        while run_id := engine.claim_next(worker):
            claims[worker].append(run_id)

    # When they all claim at once
    threads = [
        threading.Thread(target=work, args=(name, engine))
        for name, engine in zip(claims, engines, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # Then every run was claimed by exactly one worker and moved to running once
    claimed = [run_id for ids in claims.values() for run_id in ids]
    assert sorted(claimed) == sorted(run_ids)
    with setup.session() as session:
        transitions = session.scalar(
            select(func.count())
            .select_from(RunTransition)
            .where(RunTransition.to_state == "running")
        )
        assert transitions == 30
    for database in [setup, *databases]:
        database.dispose()
