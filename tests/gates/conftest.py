"""UCI Adult split into a training snapshot and evaluation data, and a plain model trained on it."""

from __future__ import annotations

import pandas
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from control_plane.sample_data import ADULT_LABEL, read_adult
from policies.gates import ModelEvaluation

NUMERIC = ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
CATEGORICAL = (
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
)
FEATURES = NUMERIC + CATEGORICAL
POSITIVE = ">50K"


@pytest.fixture(scope="session")
def adult_split() -> tuple[pandas.DataFrame, pandas.DataFrame]:
    """(training snapshot, evaluation data): 70/30, stratified, unknown categories spelled out."""
    frame = read_adult().to_pandas()
    frame[list(CATEGORICAL)] = frame[list(CATEGORICAL)].fillna("unknown")
    train, test = train_test_split(
        frame, test_size=0.3, random_state=0, stratify=frame[ADULT_LABEL]
    )
    return train, test


@pytest.fixture(scope="session")
def plain_model(adult_split: tuple[pandas.DataFrame, pandas.DataFrame]) -> Pipeline:
    """Logistic regression on every Adult column, sex and race included."""
    train, _ = adult_split
    model = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        ("numeric", StandardScaler(), list(NUMERIC)),
                        ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL)),
                    ]
                ),
            ),
            ("classify", LogisticRegression(max_iter=1000)),
        ]
    )
    return model.fit(train[list(FEATURES)], train[ADULT_LABEL])


@pytest.fixture(scope="session")
def plain_evaluation(
    adult_split: tuple[pandas.DataFrame, pandas.DataFrame], plain_model: Pipeline
) -> ModelEvaluation:
    train, test = adult_split
    return ModelEvaluation(plain_model, FEATURES, ADULT_LABEL, POSITIVE, test, train)
