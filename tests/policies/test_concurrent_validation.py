"""Bundles validated on several threads at once, as concurrent API requests and workers do."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from policies import DEFAULT_BUNDLE_DIR, PolicyBundle, load_bundle


def test_distinct_bundles_validate_concurrently() -> None:
    # Found by the replica race suite: Python 3.11's ast module is not thread-safe, so two
    # proposals validated at once could fail with "AST constructor recursion depth mismatch"
    files = dict(load_bundle(DEFAULT_BUNDLE_DIR).files)

    def validate(index: int) -> str:
        variant = {**files, "policy.csv": files["policy.csv"] + f"# variant {index}\n"}
        return PolicyBundle.from_files(variant).version

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(validate, range(64)))
    assert len(set(versions)) == 64
