"""The dashboard in a real browser: Debian's headless chromium driven by Playwright against a
real ``govplane serve``. Screenshots of each page are kept in ``test-artifacts/browser/``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import select

from connectors.registry import MlflowRegistry, ModelFlavor, Provenance
from control_plane.bootstrap import initialize
from control_plane.connectors import registry_config
from control_plane.sample_data import read_adult
from control_plane.settings import Settings
from control_plane.store import Database
from control_plane.store.models import Model, ModelVersion
from policies import DEFAULT_BUNDLE_DIR, load_bundle
from tests.conftest import govplane_serve, recorded_evaluation
from tests.lineage.events import ds, run_event
from tests.serving.conftest import fit_model

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)"
)


class Server:
    """A running control plane with an admin token and what the test registered."""

    def __init__(self, url: str, token: str, data_dir: Path) -> None:
        self.url = url
        self.settings = Settings(data_dir=data_dir)
        self.api = httpx.Client(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.token = token

    def created(self, path: str, body: Any, **params: Any) -> dict[str, Any]:
        response = self.api.post(path, json=body, params=params)
        assert response.status_code in (201, 202), response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("browser")
    token = initialize(Settings(data_dir=data_dir)).admin_token
    # Importing the whole control plane takes long on a loaded machine.
    with govplane_serve(data_dir, log=data_dir / "serve.log") as url:
        served = Server(url, token, data_dir)
        served.created(
            "/datasets", {"name": "census", "domain": "retail", "classification": "internal"}
        )
        served.created(
            "/models",
            {"name": "credit", "domain": "retail", "risk_tier": "high", "intended_use": "scoring"},
        )
        # A proposed policy change waits for an approval
        files = dict(load_bundle(DEFAULT_BUNDLE_DIR).files)
        files["policy.csv"] += "# browser test proposal\n"
        served.created("/policies", {"files": files})
        # A job that reads census and writes a feature table: lineage to draw
        event = run_event("build_features", ["census"], ["features"], namespace="lake")
        served.created("/lineage", event, domain="retail")
        yield served
        served.api.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


@contextmanager
def logged_in(browser: Browser, url: str, token: str, name: str) -> Iterator[Page]:
    """A page logged in with ``token``; its screenshot is kept as ``name``.png at the end."""
    context = browser.new_context()
    opened = context.new_page()
    opened.goto(f"{url}/login")
    opened.fill("input[name=token]", token)
    opened.click("button[type=submit]")
    expect(opened).to_have_url(f"{url}/")
    yield opened
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    opened.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    context.close()


@pytest.fixture
def page(browser: Browser, server: Server, request: pytest.FixtureRequest) -> Iterator[Page]:
    with logged_in(browser, server.url, server.token, request.node.name) as opened:
        yield opened


def test_login_shows_the_inventory(page: Page) -> None:
    expect(page.locator("#datasets")).to_contain_text("census")
    expect(page.locator("#models")).to_contain_text("credit")
    expect(page.locator("#runs")).to_contain_text("policy_change")


def test_a_pending_approval_is_listed(page: Page) -> None:
    page.click("text=Approvals")
    rows = page.locator("#approvals")
    expect(rows).to_contain_text("policy:")
    expect(rows).to_contain_text("admin")
    expect(rows).to_contain_text("none yet")


def test_the_lineage_picture_of_a_node(page: Page, server: Server) -> None:
    node = ds("census")
    page.goto(f"{server.url}/lineage?node={node}")
    picture = page.locator("svg#lineage")
    expect(picture).to_be_visible()
    expect(picture).to_contain_text("build_features")
    expect(picture).to_contain_text("features")
    # Clicking a node centres the picture on it
    picture.locator("a", has_text="build_features").click()
    expect(page).to_have_url(f"{server.url}/lineage?node=job%3Alake%3Abuild_features&depth=3")


def test_the_maturity_page_draws_its_charts(page: Page) -> None:
    page.click("text=Maturity")
    section = page.locator("#ai_capability")
    expect(section).to_contain_text("single breakthrough")
    expect(section.locator("svg[aria-label='ai_capability NIST AI RMF']")).to_be_visible()
    expect(page.locator("#data_governance")).to_contain_text("Gaps to")


def test_the_audit_trail_verifies(page: Page) -> None:
    page.click("text=Audit")
    expect(page.locator("#verification")).to_contain_text("valid")


def _registered_version(server: Server, name: str) -> None:
    """Version 1 of ``name``: an Adult classifier registered in the served MLflow store, with
    the passed evaluation and model card a promotion asks (as the promotion tests record)."""
    frame = read_adult().slice(0, 3000).to_pandas()
    registered = MlflowRegistry(registry_config(server.settings)).register(
        name,
        fit_model(frame, 1.0),
        ModelFlavor.SKLEARN,
        Provenance("browser", "adult", "1", "plain"),
    )
    db = Database(server.settings.sqlalchemy_url)
    try:
        with db.session(write=True) as session:
            model = session.scalars(select(Model).where(Model.name == name)).one()
            session.add(
                ModelVersion(
                    model_id=model.id,
                    version=1,
                    registry_uri=str(registered.uri),
                    artifact_digest=registered.artifact_digest,
                    evidence={"evaluation": recorded_evaluation(session, name, 1)},
                )
            )
    finally:
        db.engine.dispose()


def test_a_validator_approves_a_promotion(browser: Browser, server: Server) -> None:
    # Given a medium-risk model's evaluated version, whose staging promotion waits for one
    # model validator, and a validator of its domain
    server.created(
        "/models",
        {"name": "churn", "domain": "retail", "risk_tier": "medium", "intended_use": "retention"},
    )
    _registered_version(server, "churn")
    run = server.created(
        "/runs",
        {
            "kind": "promote",
            "target": "model:churn",
            "params": {"target_stage": "staging", "version": 1},
        },
    )
    _wait_for(server, run["id"], {"awaiting_approval"})
    validator = server.created(
        "/principals",
        {
            "name": "vic",
            "kind": "user",
            "roles": [{"role": "model_validator", "domain": "retail"}],
            "attributes": {"clearance": "internal"},
        },
    )
    token = server.created(f"/principals/{validator['id']}/tokens", None)["token"]
    with logged_in(browser, server.url, token, "test_a_validator_approves_a_promotion") as page:
        # When the validator approves it from the approvals page
        page.click("text=Approvals")
        row = page.locator("#approvals tr", has_text="model:churn")
        row.locator("input[name=comment]").fill("card reviewed")
        row.locator("button[value=approve]").click()
        # Then the page says so, and the run executes: the version holds staging
        expect(page.locator("#flash")).to_contain_text(
            "You decided approve on model:churn: the approval is approved"
        )
        assert _wait_for(server, run["id"], {"succeeded", "failed", "rejected"}) == "succeeded"
        page.goto(f"{server.url}/runs/{run['id']}")
        expect(page.locator("span.succeeded")).to_be_visible()
        expect(page.locator("body")).to_contain_text("approved")
        page.goto(f"{server.url}/")
        expect(page.locator("#models")).to_contain_text("v1: staging")


def _wait_for(server: Server, run_id: str, states: set[str], seconds: float = 120) -> str:
    """The run's state once it is one of ``states`` (the served worker moves it)."""
    deadline = time.monotonic() + seconds
    while True:
        state: str = server.api.get(f"/runs/{run_id}").json()["state"]
        if state in states or time.monotonic() > deadline:
            assert state in states, state
            return state
        time.sleep(0.5)
