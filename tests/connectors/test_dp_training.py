"""The DP-SGD trainer: the registered scikit-learn pipeline computes what the torch MLP does."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from opacus.accountants import RDPAccountant

from connectors.registry import MlflowRegistry, MlflowRegistryConfig, ModelFlavor, Provenance
from connectors.training import DpTraining, TrainingJob, TrainingRefusedError
from connectors.training.dp import fit_dp
from connectors.training.steps import labelled, split
from tests.connectors.conftest import IcebergTable
from tests.connectors.test_local_runner import _job

DP = DpTraining(
    noise_multiplier=1.0, max_epsilon=10.0, delta=1e-5, max_grad_norm=1.0, epochs=1, batch_size=128
)


@pytest.fixture(scope="module")
def job(iceberg_adult: IcebergTable, mlflow_config: MlflowRegistryConfig) -> TrainingJob:
    return _job(iceberg_adult, mlflow_config, privacy_mode="dp", dp=DP)


def test_the_pipeline_predicts_what_the_torch_module_predicts(
    job: TrainingJob, adult: pa.Table, registry: MlflowRegistry
) -> None:
    # Given the MLP trained with DP-SGD on Adult's training rows
    train, test = split(adult.to_pandas(), job)
    fitted = fit_dp(train, job, DP)
    # When both score the raw held-out rows, the pipeline from the frame itself
    features, _ = labelled(test, job)
    pipeline = fitted.model.predict_proba(features)[:, 1]
    encoded = fitted.model[0].transform(features)
    dense = encoded.toarray() if hasattr(encoded, "toarray") else encoded
    with torch.no_grad():
        module = torch.sigmoid(fitted.module(torch.from_numpy(dense.astype(np.float32))))
    # Then the probabilities agree to float32 precision, and so do the predicted classes
    np.testing.assert_allclose(pipeline, module.numpy(), atol=1e-5)
    assert set(fitted.model.predict(features)) <= {False, True}
    np.testing.assert_array_equal(fitted.model.predict(features), pipeline > 0.5)
    # And the skops artifact loaded back from MLflow predicts the same
    provenance = Provenance(
        run_id=job.run_id,
        dataset_id="adult",
        dataset_snapshot="1",
        privacy_mode="dp",
        epsilon=fitted.evidence.epsilon,
        delta=DP.delta,
    )
    registered = registry.register("adult-dp", fitted.model, ModelFlavor.SKLEARN, provenance)
    loaded = registry.load(registered.uri, registered.artifact_digest)
    np.testing.assert_array_equal(loaded.model.predict_proba(features)[:, 1], pipeline)
    assert loaded.version.provenance.epsilon == fitted.evidence.epsilon


def test_the_evidence_is_opacus_accounting_of_the_steps_taken(
    job: TrainingJob, adult: pa.Table
) -> None:
    # Given 2,400 training rows at an expected batch of 128: 19 Poisson batches per epoch
    train, _ = split(adult.slice(0, 3000).to_pandas(), job)
    # When the MLP trains one epoch
    evidence = fit_dp(train, job, DP).evidence
    # Then the evidence names book-keeping ghost clipping and opacus's epsilon for those steps
    assert (evidence.steps, evidence.sample_rate) == (19, pytest.approx(1 / 19))
    assert evidence.grad_sample_mode == "ghost-bookkeeping"
    reference = RDPAccountant()
    reference.history = [(1.0, 1 / 19, 19)]
    assert evidence.epsilon == pytest.approx(reference.get_epsilon(delta=1e-5), abs=1e-6)


def test_a_plan_spending_more_than_reserved_is_refused_before_training(
    job: TrainingJob, adult: pa.Table
) -> None:
    train, _ = split(adult.to_pandas(), job)
    tight = DP.model_copy(update={"noise_multiplier": 0.3, "max_epsilon": 1.0})
    with pytest.raises(TrainingRefusedError, match="more than the 1 reserved"):
        fit_dp(train, job, tight)


def test_development_runs_are_reproducible_and_production_runs_draw_securely(
    job: TrainingJob, adult: pa.Table
) -> None:
    train, _ = split(adult.slice(0, 3000).to_pandas(), job)
    # Given the same job twice with torch's generator, seeded by the job
    development = DP.model_copy(update={"secure_rng": False})
    first, second = fit_dp(train, job, development), fit_dp(train, job, development)
    # Then both train the same weights, and the evidence says the generator is not secure
    for a, b in zip(first.module.parameters(), second.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not first.evidence.secure_rng
    # And by default the job samples and adds noise from the kernel's CSPRNG
    secure = fit_dp(train, job, DP).evidence
    assert secure.secure_rng
    assert secure.rng.startswith("os.urandom")
