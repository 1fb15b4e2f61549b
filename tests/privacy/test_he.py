"""CKKS with TenSEAL: encrypted scoring of Adult equals plaintext; the server never decrypts."""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts
from sklearn.linear_model import LogisticRegression

from control_plane.sample_data import adult_features, read_adult
from privacy.he import (
    CkksParameters,
    EncryptedAggregator,
    EncryptedLinearScorer,
    InsecureParametersError,
    KeyHolder,
    SecretKeyExposureError,
)

ROWS = 6000  # two packed chunks of 4096 slots


@pytest.fixture(scope="module")
def key_holder() -> KeyHolder:
    return KeyHolder()


def test_encrypted_logistic_scores_equal_plaintext_on_adult(key_holder: KeyHolder) -> None:
    # Given a logistic model fitted on Adult, and the data owner's rows
    features, labels = adult_features(read_adult())
    model = LogisticRegression(max_iter=1000).fit(features, labels)
    rows = features[:ROWS].astype(np.float64)
    # When the owner encrypts its rows and the server scores them with only the public context
    server = EncryptedLinearScorer(key_holder.public_context(), model.coef_, model.intercept_[0])
    encrypted_scores = server.score(key_holder.encrypt_columns(rows))
    # Then the owner's decrypted probabilities equal scikit-learn's within CKKS tolerance
    logits = key_holder.decrypt_scores(encrypted_scores, ROWS)
    probabilities = 1 / (1 + np.exp(-logits))
    expected = model.predict_proba(rows)[:, 1]
    assert len(encrypted_scores) == 2
    assert np.abs(probabilities - expected).max() < 1e-4
    assert np.abs(logits - model.decision_function(rows)).max() < 1e-3


def test_the_server_cannot_decrypt_what_it_computes(key_holder: KeyHolder) -> None:
    # Given what the server holds: the public context and a result it computed
    public = ts.context_from(key_holder.public_context())
    result = EncryptedAggregator(key_holder.public_context()).total(
        [key_holder.encrypt_vector([1.0, 2.0])]
    )
    # Then its context has no secret key and decrypting fails; the key holder decrypts
    assert not public.has_secret_key()
    with pytest.raises(ValueError, match="secret_key"):
        ts.ckks_vector_from(public, result).decrypt()
    assert key_holder.decrypt_vector(result, 2) == pytest.approx([1.0, 2.0], abs=1e-5)


def test_the_server_refuses_a_context_with_the_secret_key() -> None:
    # Given a context serialized with its secret key
    context = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 60])
    context.global_scale = 2.0**40
    private = context.serialize(save_secret_key=True)
    # Then neither server role accepts it
    with pytest.raises(SecretKeyExposureError):
        EncryptedAggregator(private)
    with pytest.raises(SecretKeyExposureError):
        EncryptedLinearScorer(private, [1.0], 0.0)


def test_encrypted_aggregation_of_model_updates(key_holder: KeyHolder) -> None:
    # Given three sites' model updates, encrypted under the key holder's key
    rng = np.random.default_rng(7)
    updates = rng.normal(size=(3, 100))
    encrypted = [key_holder.encrypt_vector(update) for update in updates]
    # When the server sums and averages them without decrypting
    aggregator = EncryptedAggregator(key_holder.public_context())
    total = key_holder.decrypt_vector(aggregator.total(encrypted), 100)
    mean = key_holder.decrypt_vector(aggregator.mean(encrypted), 100)
    # Then the key holder reads the plaintext sum and mean
    assert np.abs(total - updates.sum(axis=0)).max() < 1e-5
    assert np.abs(mean - updates.mean(axis=0)).max() < 1e-5


def test_a_weighted_mean_with_noise_decrypts_with_the_stored_key(key_holder: KeyHolder) -> None:
    # Given sites that stored the key holder's secret context, and each sent its update
    # multiplied by its weight
    rng = np.random.default_rng(11)
    updates, noise = rng.normal(size=(3, 50)), rng.normal(size=50)
    weights = np.array([120, 30, 850])
    site = KeyHolder.load(key_holder.secret_context())
    encrypted = [site.encrypt_vector(u * w) for u, w in zip(updates, weights, strict=True)]
    # When the server divides their encrypted sum by the total weight and adds the noise
    aggregator = EncryptedAggregator(key_holder.public_context())
    mean = aggregator.weighted_mean(encrypted, float(weights.sum()), noise)
    # Then any key holder reads numpy's weighted average plus the noise
    expected = np.average(updates, axis=0, weights=weights) + noise
    assert np.abs(key_holder.decrypt_vector(mean, 50) - expected).max() < 1e-5
    # And a public context is no key to load
    with pytest.raises(ValueError, match="no secret key"):
        KeyHolder.load(key_holder.public_context())


@pytest.mark.parametrize(
    ("degree", "moduli"),
    [(8192, (60, 60, 60, 60)), (4096, (60, 40, 60)), (2048, (20, 20, 20)), (3000, (30, 30, 30))],
)
def test_parameters_below_128_bit_security_are_refused(
    degree: int, moduli: tuple[int, ...]
) -> None:
    with pytest.raises(InsecureParametersError):
        CkksParameters(poly_modulus_degree=degree, coeff_mod_bit_sizes=moduli)


def test_a_wrong_feature_count_is_refused(key_holder: KeyHolder) -> None:
    server = EncryptedLinearScorer(key_holder.public_context(), [1.0, 2.0, 3.0], 0.0)
    with pytest.raises(ValueError, match="2 features given, the model has 3"):
        server.score(key_holder.encrypt_columns(np.ones((4, 2))))
