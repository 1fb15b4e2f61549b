"""Maturity scoring: the bundle's rubrics scored on evidence the store holds."""

from control_plane.maturity.metrics import METRICS, Measurement
from control_plane.maturity.readers import readable_rubrics
from control_plane.maturity.scoring import RUBRICS, score

__all__ = ["METRICS", "RUBRICS", "Measurement", "readable_rubrics", "score"]
