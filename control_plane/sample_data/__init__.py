"""The UCI Adult census extract shipped with govplane for its demo, tests and benchmarks."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas
import pyarrow as pa

ADULT_COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
ADULT_SENSITIVE = ("sex", "race", "native-country")
ADULT_LABEL = "income"


def adult_path() -> Path:
    """Where the original ``adult.data`` file lies (comma + space separated, no header)."""
    return Path(str(resources.files(__package__).joinpath("adult.data")))


def read_adult(path: Path | None = None) -> pa.Table:
    """Adult as an Arrow table: named columns, ``?`` read as null, the blank last line skipped."""
    frame = pandas.read_csv(
        path or adult_path(),
        header=None,
        names=list(ADULT_COLUMNS),
        skipinitialspace=True,
        na_values=["?"],
        keep_default_na=False,
        skip_blank_lines=True,
    )
    return pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)


ADULT_NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
ADULT_CATEGORICAL = ("workclass", "marital-status", "occupation", "relationship", "race", "sex")


# Adult partitioned by employer type (``workclass``) into three sites, as the federated tests,
# bench and demo split it: a real attribute, so the sites differ in size and mix. Each site
# trains on the features below (no sensitive attribute among them).
ADULT_WORKCLASS_SITES = {
    "private-sector": ("Private",),
    "public-sector": ("Federal-gov", "State-gov", "Local-gov"),
    "self-employed": ("Self-emp-not-inc", "Self-emp-inc"),
}
ADULT_SITE_NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]
ADULT_SITE_CATEGORICAL = ["workclass", "marital-status", "occupation", "relationship"]


def adult_features(table: pa.Table) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Model inputs from Adult: standardized numeric columns and one-hot categories, and the
    label (1 for ``>50K``). A missing category is all zeros."""
    frame = table.to_pandas()
    numeric = frame[list(ADULT_NUMERIC)].astype("float64")
    numeric = (numeric - numeric.mean()) / numeric.std()
    categories = pandas.get_dummies(frame[list(ADULT_CATEGORICAL)], dtype="float64")
    features = pandas.concat([numeric, categories], axis=1).to_numpy(dtype=np.float32)
    labels = (frame[ADULT_LABEL] == ">50K").to_numpy(dtype=np.int64)
    return features, labels
