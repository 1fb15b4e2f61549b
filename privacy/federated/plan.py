"""What one federated training run asks of the server and of every site, as one JSON document.

The control plane writes it; the ServerApp receives it as the run config value ``plan`` and
every ClientApp reads it from there too. It names data by lake table and snapshot, never rows.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RUN_CONFIG_KEY = "plan"
# The node config of a site's SuperNode: which site it is and the lake it reads.
SITE = "site"
LAKE_DIR = "lake-dir"
LAKE_NAMESPACE = "lake-namespace"
# The file holding the sites' CKKS secret context (homomorphic aggregation), in the site's own
# directory; the ServerApp never reads it.
HE_KEY = "he-key"
# The file of the public context of that key, written with it: every site gives the server the
# same bytes (serializing a context anew draws fresh randomness).
HE_PUBLIC_CONTEXT = "he-public-context"


class SiteData(BaseModel):
    """The snapshot of a lake table one site trains on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    snapshot_id: int


class DifferentialPrivacy(BaseModel):
    """Site-level DP: each site's update is clipped to ``clipping_norm`` at the site and the
    server adds Gaussian noise of ``noise_multiplier * clipping_norm`` to their sum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    noise_multiplier: Annotated[float, Field(gt=0)]
    clipping_norm: Annotated[float, Field(gt=0)]


class FederatedPlan(BaseModel):
    """One federated training run: who trains on what, how, and with which protections.

    ``secagg`` masks the updates with SecAgg+; ``he`` instead has every site encrypt its update
    under the sites' CKKS key, and the server sums ciphertexts it cannot decrypt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sites: dict[str, SiteData]
    label: str
    positive_label: str
    numeric: list[str]
    categorical: list[str]
    rounds: Annotated[int, Field(ge=1)]
    local_epochs: Annotated[int, Field(ge=1)]
    learning_rate: Annotated[float, Field(gt=0)] = 0.1
    batch_size: Annotated[int, Field(ge=1)] = 64
    min_category_count: Annotated[int, Field(ge=1)] = 10
    min_sites: Annotated[int, Field(ge=1)]
    on_site_loss: Literal["continue", "fail"]
    secagg: bool
    he: bool = False
    dp: DifferentialPrivacy | None
    round_timeout: Annotated[float, Field(gt=0)] = 60.0
    seed: int = 0
    output: str

    @model_validator(mode="after")
    def _one_secure_aggregation(self) -> FederatedPlan:
        if self.secagg and self.he:
            raise ValueError("secure aggregation is SecAgg+ or homomorphic encryption, not both")
        return self

    def aggregation_weight(self, rows: int) -> int:
        """A site's weight in FedAvg: its row count, or 1 under DP. The DP noise is calibrated
        to the unweighted mean of clipped updates (sensitivity ``clipping_norm / sites``);
        weighting by rows would let a large site move the model further than the noise covers."""
        return 1 if self.dp is not None else rows
