"""Separation of duties: who may not approve a run's approval, and why.

The submitter of the run; for a model, the principals who submitted the runs that produced any
of its versions (its trainers); and the owners of restricted datasets the run or those versions
were trained on.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from control_plane.store.models import Dataset, Model, ModelVersion, Run


def excluded_approvers(session: Session, run: Run) -> dict[str, str]:
    """Principal name -> why it cannot approve ``run``."""
    excluded = {run.submitted_by: "submitted the run"}
    dataset_names = {ref.split(":", 1)[1] for ref in run.inputs if ref.startswith("dataset:")}
    dataset_ids: set[str] = set()
    kind, _, name = run.target.partition(":")
    model = session.scalars(select(Model).where(Model.name == name)).first()
    if kind == "model" and model is not None:
        versions = session.scalars(
            select(ModelVersion).where(ModelVersion.model_id == model.id)
        ).all()
        for version in versions:
            training = version.evidence.get("training") or {}
            dataset_ids.update(str(i) for i in training.get("dataset_ids") or ())
        sources = {v.source_run_id: v.version for v in versions if v.source_run_id}
        for source in session.scalars(select(Run).where(Run.id.in_(sources))):
            excluded.setdefault(
                source.submitted_by, f"trained version {sources[source.id]} of model {name}"
            )
            dataset_names.update(
                ref.split(":", 1)[1] for ref in source.inputs if ref.startswith("dataset:")
            )
    if dataset_names or dataset_ids:
        restricted = session.scalars(
            select(Dataset).where(
                Dataset.classification == "restricted",
                or_(Dataset.name.in_(dataset_names), Dataset.id.in_(dataset_ids)),
            )
        )
        for dataset in restricted:
            excluded.setdefault(dataset.owner, f"owns restricted dataset {dataset.name}")
    return excluded
