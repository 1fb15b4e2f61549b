"""The Flower deployment of the registered sites, as the settings describe it, supervised.

``govplane sites up`` starts a SuperLink and one SuperNode per registered site and keeps them
running: a SuperNode that exits is restarted (its site is named in the log), so a site that
crashed rejoins later runs; the run it dropped out of follows its own quorum policy.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import select

from control_plane.settings import Settings
from control_plane.store import Database
from control_plane.store.models import Site
from privacy.federated import Deployment, Ports, Security, SiteNode

_log = logging.getLogger(__name__)


def site_deployment(settings: Settings, db: Database) -> Deployment:
    """The deployment of every registered site, each reading the control plane's lake.

    Raises:
        DeploymentError: the SuperLink is off loopback without TLS and node keys.
    """
    with db.session() as session:
        names = session.scalars(select(Site.name).order_by(Site.name)).all()
    return Deployment(
        home=settings.flower_dir,
        sites=[SiteNode(name, settings.lake_dir, settings.lake_namespace) for name in names],
        ports=Ports(
            fleet=settings.flower_fleet_port,
            control=settings.flower_control_port,
            serverappio=settings.flower_serverappio_port,
        ),
        host=settings.flower_host,
        security=Security(
            ca_certificate=settings.flower_ca_certificate,
            certificate=settings.flower_certificate,
            private_key=settings.flower_private_key,
            node_keys=settings.flower_node_keys_dir,
        ),
    )


def supervise(deployment: Deployment, stop: threading.Event, poll_seconds: float = 2.0) -> None:
    """Restart SuperNodes that exit until ``stop`` is set; a SuperLink that exits ends it."""
    while not stop.wait(poll_seconds):
        for site in deployment.dead():
            if site == "superlink":
                raise RuntimeError("the Flower SuperLink exited")
            _log.warning("the SuperNode of site %s exited; restarting it", site)
            deployment.restart(site)
