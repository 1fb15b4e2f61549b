"""Federated training on real Flower processes: 3 sites x 5 rounds, plain FedAvg next to
SecAgg+ and DP, in one run on one deployment.

A SuperLink and three SuperNodes (one per site, Adult partitioned by workclass in an embedded
lake) run govplane's ServerApp and ClientApp, as ``govplane sites up`` starts them. The same
plan runs three times: plain FedAvg (the baseline), with SecAgg+ masking, and with Flower's
client-side fixed-clipping DP (noise multiplier 1.0, clipping norm 5.0). Each figure is the
wall time per round (mean over the rounds, as the ServerApp measured it) and in total
(submission to outcome). The run fails (exit 1) if any training does not complete all rounds.

Run: ``.venv/bin/python bench/federated.py [--rounds 5] [--rows 6000] [--json]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _rows
import pyarrow as pa
import pyarrow.compute as pc

# Run as a script, this file's folder comes first on sys.path; the packages live one above.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from connectors.lake import IcebergLake
from control_plane.launcher import free_port
from control_plane.sample_data import (
    ADULT_SITE_CATEGORICAL,
    ADULT_SITE_NUMERIC,
    ADULT_WORKCLASS_SITES,
    read_adult,
)
from privacy.federated import (
    Deployment,
    DifferentialPrivacy,
    FederatedPlan,
    FlowerControl,
    Ports,
    SiteData,
    SiteNode,
    wait_for_outcome,
)

NAMESPACE = "govplane"


def _lake(root: Path, rows: int) -> dict[str, SiteData]:
    lake = IcebergLake.embedded(root / "lake", NAMESPACE)
    adult = read_adult().slice(0, rows)
    sites = {}
    for site, workclasses in ADULT_WORKCLASS_SITES.items():
        part = adult.filter(pc.is_in(adult["workclass"], pa.array(workclasses)))
        lake.create(site, part.schema)
        sites[site] = SiteData(table=site, snapshot_id=lake.append(site, part))
    return sites


def _train(control: FlowerControl, plan: FederatedPlan) -> tuple[float, float]:
    """(total seconds, mean seconds per round) of one training."""
    started = time.perf_counter()
    outcome: dict[str, Any] = dict(
        wait_for_outcome(control, control.submit(plan), Path(plan.output), 3600)
    )
    total = time.perf_counter() - started
    rounds = outcome.get("rounds", [])
    if outcome.get("status") != "completed" or len(rounds) != plan.rounds:
        raise SystemExit(f"training did not complete: {outcome.get('error')}")
    return total, sum(r["seconds"] for r in rounds) / len(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--json", action="store_true", help="end with the rows as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="govplane-bench-federated-") as scratch:
        root = Path(scratch)
        sites = _lake(root, args.rows)
        deployment = Deployment(
            root / "flower",
            [SiteNode(site, root / "lake", NAMESPACE) for site in ADULT_WORKCLASS_SITES],
            Ports(free_port(), free_port(), free_port()),
        )
        deployment.start()
        try:
            control = FlowerControl(root / "flower", deployment.control_address)
            base = {
                "sites": sites,
                "label": "income",
                "positive_label": ">50K",
                "numeric": ADULT_SITE_NUMERIC,
                "categorical": ADULT_SITE_CATEGORICAL,
                "rounds": args.rounds,
                "local_epochs": 1,
                "min_sites": 3,
                "on_site_loss": "fail",
                "round_timeout": 600.0,
            }
            variants = {
                "plain FedAvg": {"secagg": False, "dp": None},
                "SecAgg+": {"secagg": True, "dp": None},
                "DP (client-side clipping)": {
                    "secagg": False,
                    "dp": DifferentialPrivacy(noise_multiplier=1.0, clipping_norm=5.0),
                },
            }
            timings = {
                name: _train(
                    control,
                    FederatedPlan.model_validate(
                        {**base, **variant, "output": str(root / f"{i}.json")}
                    ),
                )
                for i, (name, variant) in enumerate(variants.items())
            }
        finally:
            deployment.stop()
    plain_total, plain_round = timings["plain FedAvg"]
    print(f"3 sites x {args.rounds} rounds, {args.rows:,} Adult rows, real Flower processes")
    for name, (total, per_round) in timings.items():
        print(f"  {name:28s} {per_round:7.1f} s/round  {total:7.1f} s total")
    if args.json:
        rows = [_rows.row("plain FedAvg, per round", plain_round, "s", plain_round, "itself")]
        for name, (total, per_round) in timings.items():
            if name == "plain FedAvg":
                continue
            rows.append(
                _rows.row(f"{name}, per round", per_round, "s", plain_round, "plain FedAvg")
            )
            rows.append(_rows.row(f"{name}, total", total, "s", plain_total, "plain FedAvg"))
        _rows.emit(rows)


if __name__ == "__main__":
    main()
