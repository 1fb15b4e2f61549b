"""``audit.yaml``: the audit retention a bundle sets, or leaves unset."""

from __future__ import annotations

import pytest

from policies import DEFAULT_BUNDLE_DIR, BundleError, PolicyBundle, load_bundle


def _default_files() -> dict[str, str]:
    return dict(load_bundle(DEFAULT_BUNDLE_DIR).files)


def test_the_default_bundle_keeps_audit_records_400_days() -> None:
    bundle = load_bundle(DEFAULT_BUNDLE_DIR)
    assert bundle.audit is not None
    assert bundle.audit.retention_days == 400


def test_a_bundle_without_audit_yaml_sets_no_retention() -> None:
    files = _default_files()
    del files["audit.yaml"]
    assert PolicyBundle.from_files(files).audit is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "retention_days: 30\n",
            r"line 1: retention_days: .*greater than or equal to 183",
        ),
        ("retention_days: '400'\n", r"retention_days: .*valid integer"),
        (
            "retention_days: 400\nkeep_forever: true\n",
            r"line 2: keep_forever: unknown field",
        ),
        ("{}\n", r"retention_days: missing field"),
    ],
)
def test_an_audit_retention_below_six_months_or_malformed_is_refused(
    text: str, problem: str
) -> None:
    files = _default_files()
    files["audit.yaml"] = text
    with pytest.raises(BundleError, match=problem):
        PolicyBundle.from_files(files)


def test_an_unknown_bundle_file_names_the_optional_one() -> None:
    files = {**_default_files(), "retention.yaml": "days: 1\n"}
    with pytest.raises(BundleError, match=r"unknown file retention.yaml; .*optionally audit.yaml"):
        PolicyBundle.from_files(files)
