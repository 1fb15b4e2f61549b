"""Evidence packs of model versions, verifiable offline (see ``audit.evidence_pack``)."""

from control_plane.evidence.pack import evidence_pack

__all__ = ["evidence_pack"]
