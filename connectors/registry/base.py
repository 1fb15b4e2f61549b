"""The model-registry protocol: register a trained model with its provenance, load it back."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from connectors.registry.release import SignedRelease

#: ``models:/NAME/VERSION``: the only form in which a model artifact is referenced.
_MODEL_URI = re.compile(
    r"^models:/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,255})/(?P<version>[1-9]\d{0,9})$"
)


class RegistryError(RuntimeError):
    """The registry refused or failed an operation."""


class ArtifactIntegrityError(RegistryError):
    """A model's artifact files do not hash to the digest govplane recorded for them."""


class NotSupportedError(RegistryError):
    """The backend cannot handle this kind of model."""


class ModelFlavor(StrEnum):
    """How a model is serialized in the registry."""

    SKLEARN = "sklearn"
    PYTORCH = "pytorch"


@dataclass(frozen=True)
class Provenance:
    """Where a model came from: the governed run, the data it read, how privacy was kept."""

    run_id: str
    dataset_id: str
    dataset_snapshot: str
    privacy_mode: str
    epsilon: float | None = None
    delta: float | None = None
    parent_version: str | None = None
    """The registry version this model was derived from (a mitigated refit names its parent)."""
    method: str | None = None
    """How it was derived from ``parent_version``."""

    def as_tags(self) -> dict[str, str]:
        """The provenance as ``govplane.*`` string tags (an absent epsilon is omitted)."""
        values = {
            "run_id": self.run_id,
            "dataset_id": self.dataset_id,
            "dataset_snapshot": self.dataset_snapshot,
            "privacy_mode": self.privacy_mode,
            "epsilon": None if self.epsilon is None else repr(self.epsilon),
            "delta": None if self.delta is None else repr(self.delta),
            "parent_version": self.parent_version,
            "method": self.method,
        }
        return {f"govplane.{key}": value for key, value in values.items() if value is not None}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Provenance:
        """The provenance :meth:`as_tags` wrote.

        Raises:
            RegistryError: a required tag is missing.
        """
        try:
            return cls(
                run_id=tags["govplane.run_id"],
                dataset_id=tags["govplane.dataset_id"],
                dataset_snapshot=tags["govplane.dataset_snapshot"],
                privacy_mode=tags["govplane.privacy_mode"],
                epsilon=_float(tags.get("govplane.epsilon")),
                delta=_float(tags.get("govplane.delta")),
                parent_version=tags.get("govplane.parent_version"),
                method=tags.get("govplane.method"),
            )
        except KeyError as missing:
            raise RegistryError(f"model version has no {missing.args[0]} tag") from None


def _float(value: str | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class ModelUri:
    """A parsed ``models:/NAME/VERSION`` reference."""

    name: str
    version: int

    @classmethod
    def parse(cls, uri: str) -> ModelUri:
        """Parse a registry URI; anything else (a file path, ``runs:/``, ``s3://``) is refused.

        Raises:
            ValueError: ``uri`` is not ``models:/NAME/VERSION``.
        """
        match = _MODEL_URI.match(uri)
        if match is None:
            raise ValueError(f"{uri!r} is not a registry URI of the form models:/NAME/VERSION")
        return cls(match["name"], int(match["version"]))

    def __str__(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version in the registry, as govplane links it in its inventory."""

    uri: ModelUri
    flavor: ModelFlavor
    artifact_digest: str
    provenance: Provenance
    registry_run_id: str


@dataclass(frozen=True)
class LoadedModel:
    """A model read back from the registry after its digest was checked."""

    version: RegisteredVersion
    model: Any


class ModelRegistry(Protocol):
    """Keeps trained models with their provenance; one backend per registry product."""

    @property
    def kind(self) -> str: ...

    def register(
        self,
        name: str,
        model: Any,
        flavor: ModelFlavor,
        provenance: Provenance,
        input_example: Any = None,
    ) -> RegisteredVersion:
        """Log ``model`` with its provenance and register it as a new version of ``name``."""
        ...

    def load(self, uri: ModelUri, expected_digest: str) -> LoadedModel:
        """Read a registered version back, refusing it unless its files hash to ``expected_digest``.

        Raises:
            ArtifactIntegrityError: the artifact files do not match ``expected_digest``.
        """
        ...

    def download(self, uri: ModelUri, destination: Path) -> Path:
        """Copy a version's artifact files under ``destination``; the folder they are in."""
        ...

    def artifact_location(self, uri: ModelUri) -> str:
        """Where the registry keeps a version's artifact folder (what a cluster fetches)."""
        ...

    def current_digest(self, uri: ModelUri) -> str:
        """The digest of a version's artifact files as the registry holds them now."""
        ...

    def release(self, signed: SignedRelease, evidence_link: str) -> int | None:
        """Point the release's stage alias at its version if its signature verifies; returns
        the version that held the alias before (now archived), if another did."""
        ...


def artifact_digest(root: Path) -> str:
    """``sha256:`` over a model's artifact files, independent of how they were listed.

    The files are taken in the order of their relative POSIX paths; each contributes a line
    ``<sha256 of its bytes>  <relative path>`` (the ``sha256sum`` format), and the digest is the
    SHA-256 of those lines, so a renamed, added, removed or changed file changes it.

    Raises:
        ArtifactIntegrityError: the folder holds a symbolic link or no file at all.
    """
    manifest = hashlib.sha256()
    files = []
    for path in root.rglob("*"):
        if path.is_symlink():
            raise ArtifactIntegrityError(f"model artifact {path.relative_to(root)} is a link")
        if path.is_file():
            files.append((path.relative_to(root).as_posix(), path))
    if not files:
        raise ArtifactIntegrityError(f"no model artifact files under {root}")
    for relative, path in sorted(files):
        content = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                content.update(block)
        manifest.update(f"{content.hexdigest()}  {relative}\n".encode())
    return f"sha256:{manifest.hexdigest()}"
