"""``/maturity``: the bundle's maturity rubrics scored on the store's evidence."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from control_plane.api.deps import GuardDep, ServicesDep
from control_plane.api.fields import ResponseModel
from control_plane.maturity import readable_rubrics, score

router = APIRouter(prefix="/maturity", tags=["maturity"])


class CriterionOut(ResponseModel):
    name: str
    metric: str
    dimension: str | None
    requirement: str
    value: float | None
    met: bool
    evidence: str
    nist: Literal["govern", "map", "measure", "manage"]
    eu_ai_act: list[str]


class LevelOut(ResponseModel):
    name: str
    reached: bool
    criteria: list[CriterionOut]


class GapOut(ResponseModel):
    criterion: str
    metric: str
    needs: str
    evidence: str


class Coverage(ResponseModel):
    met: int
    total: int


class RubricOut(ResponseModel):
    level: str | None
    reached: int
    of: int
    levels: list[LevelOut]
    next_level: str | None
    gaps: list[GapOut]
    dimensions: dict[str, int]
    nist: dict[str, Coverage]
    eu_ai_act: dict[str, Coverage]


class MaturityOut(ResponseModel):
    bundle_version: str
    ai_capability: RubricOut | None = None
    data_governance: RubricOut | None = None


@router.get("")
def get_maturity(services: ServicesDep, guard: GuardDep) -> MaturityOut:
    """The rubrics the caller may read (``read`` on ``maturity:RUBRIC``), scored now."""
    rubrics = readable_rubrics(guard)
    with services.db.session() as session:
        return MaturityOut.model_validate(score(session, guard.bundle, rubrics))
