"""DP-SGD training of a 2-layer MLP, handed over as a scikit-learn pipeline.

The rows go through the plain trainer's preprocessing (:func:`.steps.preprocessing`); a torch
MLP (one ReLU hidden layer, one logistic output) is trained on them with
:func:`privacy.dp_sgd.train_dp_sgd`. Its learned weights are then set on a scikit-learn
``MLPClassifier`` of the same shape, the last step of one ``Pipeline`` with the preprocessing:
the registered model predicts from the raw feature frame, like every other version, and is
serialized with skops (no pickled torch module).

The preprocessing's statistics (category sets, means, deviations) are fitted on the training
rows without noise: DP-SGD protects what the weights learn, not those statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from connectors.training.job import DpTraining, TrainingJob
from connectors.training.steps import TrainingRefusedError, labelled, preprocessing
from privacy.accounting import StepSegment, epsilon_spent
from privacy.dp_sgd import DpSgdEvidence, DpSgdPlan, train_dp_sgd


@dataclass(frozen=True)
class DpFit:
    """The pipeline to register, the torch module it was copied from, and the DP evidence."""

    model: Any
    module: nn.Sequential
    evidence: DpSgdEvidence


def mlp(inputs: int, hidden_units: int) -> nn.Sequential:
    """Linear -> ReLU -> Linear to one logit per row (the shape of a binary ``MLPClassifier``)."""
    return nn.Sequential(
        nn.Linear(inputs, hidden_units), nn.ReLU(), nn.Linear(hidden_units, 1), nn.Flatten(0)
    )


def fit_dp(train: pd.DataFrame, job: TrainingJob, dp: DpTraining) -> DpFit:
    """Train the MLP with DP-SGD under ``dp`` on the training rows.

    Raises:
        TrainingRefusedError: the label is missing, or the planned steps would spend more
            than ``dp.max_epsilon`` at ``dp.delta`` (checked before any step is taken).
    """
    features, positive = labelled(train, job)
    plan = DpSgdPlan(
        max_grad_norm=dp.max_grad_norm,
        delta=dp.delta,
        epochs=dp.epochs,
        batch_size=dp.batch_size,
        noise_multiplier=dp.noise_multiplier,
        accountant=dp.accountant,
        production=dp.secure_rng,
    )
    sample_rate, steps = plan.schedule(len(features))
    planned = epsilon_spent(
        [StepSegment(dp.noise_multiplier, sample_rate, steps)], dp.delta, dp.accountant
    )
    if planned > dp.max_epsilon:
        raise TrainingRefusedError(
            f"{steps} DP-SGD steps at sample rate {sample_rate:.6g} and noise "
            f"{dp.noise_multiplier:.6g} would spend epsilon {planned:.6g}, more than the "
            f"{dp.max_epsilon:.6g} reserved"
        )
    transformer = preprocessing(features).fit(features)
    inputs = torch.from_numpy(_dense(transformer.transform(features)))
    labels = torch.from_numpy(positive.to_numpy(dtype=np.float32))
    torch.manual_seed(job.seed)
    module = mlp(inputs.shape[1], dp.hidden_units)
    evidence = train_dp_sgd(
        module,
        torch.optim.SGD(module.parameters(), lr=dp.learning_rate),
        nn.BCEWithLogitsLoss(),
        torch.utils.data.TensorDataset(inputs, labels),
        plan,
    )
    from sklearn.pipeline import make_pipeline

    return DpFit(make_pipeline(transformer, as_mlp_classifier(module)), module, evidence)


def as_mlp_classifier(module: nn.Sequential) -> Any:
    """A fitted scikit-learn ``MLPClassifier`` computing what :func:`mlp` ``module`` computes,
    with classes ``[False, True]`` (the positive label or not), like the plain model."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import LabelBinarizer

    hidden, output = module[0], module[2]
    if not (isinstance(hidden, nn.Linear) and isinstance(output, nn.Linear)):
        raise TypeError("not an MLP made by mlp()")
    classifier = MLPClassifier(hidden_layer_sizes=(hidden.out_features,), activation="relu")
    classifier.coefs_ = [_array(hidden.weight).T, _array(output.weight).T]
    classifier.intercepts_ = [_array(hidden.bias), _array(output.bias)]
    classifier.n_features_in_ = hidden.in_features
    classifier.n_layers_ = 3
    classifier.n_outputs_ = 1
    classifier.out_activation_ = "logistic"
    classifier._label_binarizer = LabelBinarizer().fit(np.array([False, True]))
    classifier.classes_ = classifier._label_binarizer.classes_
    return classifier


def _array(parameter: torch.Tensor) -> np.ndarray[Any, np.dtype[np.float64]]:
    return parameter.detach().cpu().numpy().astype(np.float64)


def _dense(matrix: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    dense = matrix.toarray() if hasattr(matrix, "toarray") else matrix
    return np.ascontiguousarray(dense, dtype=np.float32)
