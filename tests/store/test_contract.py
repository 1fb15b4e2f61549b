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
from control_plane.runs import ExecutionContext, RunEngine, RunKind, RunState, RunWorker
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


def test_the_store_refuses_a_second_active_bundle(db: Database) -> None:
    # Given an active bundle
    files = dict(load_bundle(DEFAULT_BUNDLE_DIR).files)
    with db.session(write=True) as session:
        activate_bundle(session, PolicyBundle.from_files(files), None)
    # When a second row is written as active past activate_bundle's lock
    second = PolicyBundle.from_files({**files, "policy.csv": files["policy.csv"] + "# 2\n"})
    row = PolicyBundleRow(version=second.version, files=dict(second.files), status="active")
    # Then the store itself refuses it, and the first stays the only active one
    with pytest.raises(IntegrityError), db.session(write=True) as session:
        session.add(row)
    with db.session() as session:
        assert session.scalars(select(PolicyBundleRow.status)).all() == ["active"]


def test_revision_counter_increments(db: Database) -> None:
    with db.session(write=True) as session:
        start = current_revision(session)
        bump_revision(session)
        bump_revision(session)
    with db.session() as session:
        assert current_revision(session) == (start or 0) + 2


def _pending_runs(db: Database, count: int, bundle_version: str = "sha256:x") -> list[str]:
    with db.session(write=True) as session:
        runs = [
            Run(
                kind=RunKind.TRAIN,
                state=RunState.PENDING,
                domain="retail",
                target="model:m",
                bundle_version=bundle_version,
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


def _state(db: Database, run_id: str) -> tuple[str, str | None]:
    with db.session() as session:
        run = session.get_one(Run, run_id)
        return run.state, run.error


def test_a_run_whose_worker_stops_renewing_fails_and_never_runs_again(db: Database) -> None:
    # Given a run claimed by a worker that then stops (crashed) without renewing its lease
    lease = timedelta(milliseconds=200)
    (run_id,) = _pending_runs(db, 1)
    assert RunEngine(db, {}, lease=lease).claim_next("crashed") == run_id
    time.sleep(0.3)
    # When another worker looks for work
    other = RunEngine(db, {}, lease=lease)
    claimed = other.claim_next("survivor")
    # Then the run is not handed out again: it failed, naming the lost worker
    assert claimed is None
    assert _state(db, run_id) == (RunState.FAILED, "worker crashed stopped renewing its claim")
    assert other.fail_lost_runs() == 0


def test_a_renewed_claim_is_kept_and_only_its_holder_can_renew_it(db: Database) -> None:
    # Given a claimed run whose worker renews its short lease
    engine = RunEngine(db, {}, lease=timedelta(milliseconds=300))
    (run_id,) = _pending_runs(db, 1)
    assert engine.claim_next("w1") == run_id
    for _ in range(4):
        time.sleep(0.1)
        assert engine.renew(run_id, "w1")
    # Then it was never taken away, and nobody else can renew it
    assert engine.fail_lost_runs() == 0
    assert _state(db, run_id) == (RunState.RUNNING, None)
    assert not engine.renew(run_id, "w2")


class _SlowExecutor:
    kind = RunKind.TRAIN

    def execute(self, context: ExecutionContext) -> dict[str, str]:
        time.sleep(1.0)
        return {"run": context.run_id}


def test_the_worker_heartbeat_keeps_a_long_run_alive(db: Database) -> None:
    # Given a run that executes for longer than the lease, and a rival worker reaping leases
    bundle = load_bundle(DEFAULT_BUNDLE_DIR)
    with db.session(write=True) as session:
        activate_bundle(session, bundle, None)
    (run_id,) = _pending_runs(db, 1, bundle.version)
    lease = timedelta(milliseconds=300)
    worker = RunWorker(RunEngine(db, {RunKind.TRAIN: _SlowExecutor()}, lease=lease), "w1", 0.05)
    rival = RunEngine(db, {}, lease=lease)
    reaped: list[int] = []
    done = threading.Event()

    def reap() -> None:
        while not done.is_set():
            reaped.append(rival.fail_lost_runs())
            time.sleep(0.05)

    reaper = threading.Thread(target=reap)
    reaper.start()
    # When the worker processes it
    try:
        assert worker.drain() == 1
    finally:
        done.set()
        reaper.join()
    # Then the rival never took it, and it succeeded
    assert sum(reaped) == 0
    assert _state(db, run_id) == (RunState.SUCCEEDED, None)
