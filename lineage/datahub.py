"""DataHub as a lineage destination, through acryl-datahub.

An OpenLineage RunEvent becomes DataHub metadata change proposals: the job as a DataFlow and
DataJob with its inputs and outputs, datasets with properties, schema, ownership and upstream
(also column-level) lineage, model versions as MLModels linked to the jobs that train or read
them and to the deployments that serve them, and deployments as MLModelDeployments.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import attr
from datahub.emitter.mce_builder import (
    make_data_flow_urn,
    make_data_job_urn_with_flow,
    make_data_platform_urn,
    make_dataset_urn,
    make_ml_model_deployment_urn,
    make_ml_model_urn,
    make_schema_field_urn,
    make_user_urn,
)
from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.emitter.rest_emitter import DatahubRestEmitter
from datahub.metadata.schema_classes import (
    BooleanTypeClass,
    DataFlowInfoClass,
    DataJobInfoClass,
    DataJobInputOutputClass,
    DatasetLineageTypeClass,
    DatasetPropertiesClass,
    FineGrainedLineageClass,
    FineGrainedLineageDownstreamTypeClass,
    FineGrainedLineageUpstreamTypeClass,
    MLModelDeploymentPropertiesClass,
    MLModelPropertiesClass,
    NumberTypeClass,
    OtherSchemaClass,
    OwnerClass,
    OwnershipClass,
    OwnershipTypeClass,
    SchemaFieldClass,
    SchemaFieldDataTypeClass,
    SchemaMetadataClass,
    StringTypeClass,
    UpstreamClass,
    UpstreamLineageClass,
    VersionTagClass,
)
from openlineage.client.serde import Serde
from openlineage.client.transport.transport import Config, Transport

from lineage.nodes import DEPLOYMENT_NAMESPACE, MODEL_NAMESPACE

PLATFORM = "govplane"
_NUMERIC = re.compile(r"int|long|float|double|decimal|number|numeric", re.IGNORECASE)


def _platform(namespace: str) -> str:
    scheme = urlparse(namespace).scheme or namespace.split(".")[0]
    return re.sub(r"[^a-z0-9_-]", "-", scheme.lower()) or PLATFORM


def _dataset_urn(dataset: Mapping[str, Any], env: str) -> str:
    return make_dataset_urn(_platform(dataset["namespace"]), dataset["name"], env)


def _field_type(native: str) -> SchemaFieldDataTypeClass:
    if _NUMERIC.search(native):
        return SchemaFieldDataTypeClass(type=NumberTypeClass())  # type: ignore[no-untyped-call]
    if native.lower().startswith("bool"):
        return SchemaFieldDataTypeClass(type=BooleanTypeClass())  # type: ignore[no-untyped-call]
    return SchemaFieldDataTypeClass(type=StringTypeClass())  # type: ignore[no-untyped-call]


def _properties(facets: Mapping[str, Any]) -> dict[str, str]:
    """govplane facets as DataHub custom properties (string values, JSON where structured)."""
    properties: dict[str, str] = {}
    for name, facet in facets.items():
        if not name.startswith("govplane_"):
            continue
        for key, value in facet.items():
            if key.startswith("_") or value is None:
                continue
            properties[f"{name}.{key}"] = value if isinstance(value, str) else json.dumps(value)
    return properties


def event_to_mcps(
    event: Mapping[str, Any], env: str = "PROD"
) -> list[MetadataChangeProposalWrapper]:
    """The DataHub metadata change proposals of one OpenLineage RunEvent (a JSON object)."""
    job = event["job"]
    flow = make_data_flow_urn(_platform(job["namespace"]), job["namespace"], env.lower())
    job_urn = make_data_job_urn_with_flow(flow, job["name"])
    run_facets = event.get("run", {}).get("facets", {})
    inputs = event.get("inputs") or []
    outputs = event.get("outputs") or []
    mcps = [
        MetadataChangeProposalWrapper(
            entityUrn=flow, aspect=DataFlowInfoClass(name=job["namespace"])
        ),
        MetadataChangeProposalWrapper(
            entityUrn=job_urn,
            aspect=DataJobInfoClass(
                name=job["name"],
                type="COMMAND",
                flowUrn=flow,
                customProperties={
                    **_properties(run_facets),
                    "openlineage.runId": event["run"]["runId"],
                    "openlineage.eventType": event.get("eventType") or "",
                },
            ),
        ),
    ]
    deployments = [
        make_ml_model_deployment_urn(PLATFORM, d["name"], env)
        for d in outputs
        if d["namespace"] == DEPLOYMENT_NAMESPACE
    ]
    plain_inputs = []
    for dataset in inputs:
        if dataset["namespace"] == MODEL_NAMESPACE:
            mcps.append(_model(dataset, env, downstream_jobs=[job_urn], deployments=deployments))
        elif dataset["namespace"] != DEPLOYMENT_NAMESPACE:
            plain_inputs.append(_dataset_urn(dataset, env))
            mcps += _dataset(dataset, env, [])
    plain_outputs = []
    for dataset in outputs:
        if dataset["namespace"] == MODEL_NAMESPACE:
            mcps.append(_model(dataset, env, training_jobs=[job_urn]))
        elif dataset["namespace"] == DEPLOYMENT_NAMESPACE:
            mcps.append(
                MetadataChangeProposalWrapper(
                    entityUrn=make_ml_model_deployment_urn(PLATFORM, dataset["name"], env),
                    aspect=MLModelDeploymentPropertiesClass(
                        customProperties=_properties(run_facets), description=job["name"]
                    ),
                )
            )
        else:
            plain_outputs.append(_dataset_urn(dataset, env))
            mcps += _dataset(dataset, env, plain_inputs)
    mcps.append(
        MetadataChangeProposalWrapper(
            entityUrn=job_urn,
            aspect=DataJobInputOutputClass(
                inputDatasets=sorted(set(plain_inputs)), outputDatasets=sorted(set(plain_outputs))
            ),
        )
    )
    return mcps


def _model(
    dataset: Mapping[str, Any],
    env: str,
    training_jobs: list[str] | None = None,
    downstream_jobs: list[str] | None = None,
    deployments: list[str] | None = None,
) -> MetadataChangeProposalWrapper:
    name = dataset["name"]
    version = name.rpartition(":")[2] if ":" in name else None
    return MetadataChangeProposalWrapper(
        entityUrn=make_ml_model_urn(PLATFORM, name, env),
        aspect=MLModelPropertiesClass(
            name=name,
            version=VersionTagClass(versionTag=version) if version else None,
            trainingJobs=training_jobs,
            downstreamJobs=downstream_jobs,
            deployments=deployments or None,
        ),
    )


def _dataset(
    dataset: Mapping[str, Any], env: str, upstreams: list[str]
) -> list[MetadataChangeProposalWrapper]:
    urn = _dataset_urn(dataset, env)
    facets = dataset.get("facets") or {}
    source = facets.get("dataSource") or {}
    mcps = [
        MetadataChangeProposalWrapper(
            entityUrn=urn,
            aspect=DatasetPropertiesClass(
                name=dataset["name"],
                qualifiedName=f"{dataset['namespace']}/{dataset['name']}",
                uri=source.get("uri"),
                customProperties=_properties(facets),
            ),
        )
    ]
    fields = (facets.get("schema") or {}).get("fields") or []
    if fields:
        mcps.append(
            MetadataChangeProposalWrapper(
                entityUrn=urn,
                aspect=SchemaMetadataClass(
                    schemaName=dataset["name"],
                    platform=make_data_platform_urn(_platform(dataset["namespace"])),
                    version=0,
                    hash="",
                    platformSchema=OtherSchemaClass(rawSchema=""),
                    fields=[
                        SchemaFieldClass(
                            fieldPath=f["name"],
                            type=_field_type(f.get("type") or ""),
                            nativeDataType=f.get("type") or "unknown",
                        )
                        for f in fields
                    ],
                ),
            )
        )
    owners = (facets.get("ownership") or {}).get("owners") or []
    if owners:
        mcps.append(
            MetadataChangeProposalWrapper(
                entityUrn=urn,
                aspect=OwnershipClass(
                    owners=[
                        OwnerClass(
                            owner=make_user_urn(o["name"].removeprefix("user:")),
                            type=OwnershipTypeClass.DATAOWNER,
                        )
                        for o in owners
                    ]
                ),
            )
        )
    columns = (facets.get("columnLineage") or {}).get("fields") or {}
    fine = [
        FineGrainedLineageClass(
            upstreamType=FineGrainedLineageUpstreamTypeClass.FIELD_SET,
            downstreamType=FineGrainedLineageDownstreamTypeClass.FIELD,
            upstreams=[
                make_schema_field_urn(_dataset_urn(i, env), i["field"])
                for i in derived.get("inputFields", [])
            ],
            downstreams=[make_schema_field_urn(urn, column)],
        )
        for column, derived in columns.items()
    ]
    column_sources = {
        _dataset_urn(i, env) for derived in columns.values() for i in derived.get("inputFields", [])
    }
    sources = sorted(set(upstreams) | column_sources)
    if sources:
        mcps.append(
            MetadataChangeProposalWrapper(
                entityUrn=urn,
                aspect=UpstreamLineageClass(
                    upstreams=[
                        UpstreamClass(dataset=s, type=DatasetLineageTypeClass.TRANSFORMED)
                        for s in sources
                    ],
                    fineGrainedLineages=fine or None,
                ),
            )
        )
    return mcps


@attr.define
class DataHubRestConfig(Config):
    """Where DataHub's metadata service (GMS) listens, and its token."""

    server: str
    token: str | None = None
    env: str = "PROD"
    timeout: float = 10.0

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> DataHubRestConfig:
        if "server" not in params:
            raise ValueError("a datahub-rest destination needs `server` (the GMS URL)")
        return cls(**params)


class DataHubRestTransport(Transport):
    """Sends each event's metadata change proposals to DataHub with acryl-datahub's REST emitter."""

    kind = "datahub-rest"
    config_class = DataHubRestConfig

    def __init__(self, config: DataHubRestConfig) -> None:
        self.config = config
        self._emitter = DatahubRestEmitter(
            config.server, token=config.token, timeout_sec=config.timeout, retry_max_times=0
        )

    def emit(self, event: Any) -> None:
        for mcp in event_to_mcps(Serde.to_dict(event), self.config.env):
            self._emitter.emit_mcp(mcp)


@attr.define
class DataHubFileConfig(Config):
    """The MCP JSON file to keep (readable by ``datahub ingest`` and ``datahub check``)."""

    path: str
    env: str = "PROD"

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> DataHubFileConfig:
        if "path" not in params:
            raise ValueError("a datahub-file destination needs `path`")
        return cls(**params)


class DataHubFileTransport(Transport):
    """Keeps a DataHub MCP JSON file of every event, replaced atomically on each emit."""

    kind = "datahub-file"
    config_class = DataHubFileConfig

    def __init__(self, config: DataHubFileConfig) -> None:
        self.config = config

    def emit(self, event: Any) -> None:
        path = Path(self.config.path)
        records = json.loads(path.read_text()) if path.exists() else []
        records += [mcp.to_obj() for mcp in event_to_mcps(Serde.to_dict(event), self.config.env)]
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "w") as out:
            json.dump(records, out, indent=2)
        os.replace(temporary, path)
