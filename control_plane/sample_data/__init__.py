"""The UCI Adult census extract shipped with govplane for its demo, tests and benchmarks."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

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
