"""Policy bundles: the versioned set of files that says who may do what and which gates apply.

A bundle is a folder, or a ``.tar.gz`` of one, holding exactly these files:

- ``model.conf``: the casbin model (RBAC with domains plus ABAC, deny overrides allow); it must
  be govplane's model, see :mod:`policies.reference`;
- ``policy.csv``: policy and role inheritance lines, see :mod:`policies.rules`;
- ``gates.yaml``, ``approvals.yaml``, ``privacy.yaml``, ``maturity.yaml``: see
  :mod:`policies.sections`;
- optionally ``audit.yaml``, the audit trail's retention: without it nothing is ever pruned.

Other files in the folder (a README, a ``cases/`` folder of policy cases) are not part of the
bundle. A bundle's version is ``sha256:`` and the hex SHA-256 of the compact JSON array of its
``[name, content]`` pairs sorted by name, so equal content always has the same version. Loading
validates everything, including building the casbin enforcer and compiling every condition,
so a broken bundle is refused before it can decide anything.
"""

from __future__ import annotations

import functools
import hashlib
import json
import tarfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Final

from policies.documents import parse_document
from policies.errors import BundleError
from policies.reference import check_model, check_policy
from policies.rules import PolicyTable, parse_policy_csv
from policies.sections.approvals import ApprovalsSection
from policies.sections.audit import AuditSection
from policies.sections.gates import GatesSection
from policies.sections.maturity import MaturitySection
from policies.sections.privacy import PrivacySection

BUNDLE_FILES: Final = (
    "approvals.yaml",
    "gates.yaml",
    "maturity.yaml",
    "model.conf",
    "policy.csv",
    "privacy.yaml",
)
OPTIONAL_FILES: Final = ("audit.yaml",)
MAX_FILE_BYTES: Final = 1 << 20
DEFAULT_BUNDLE_DIR: Final = Path(__file__).parent / "default_bundle"
"""The bundle that ships with govplane."""

_CONTENT_SUFFIXES: Final = (".conf", ".csv", ".yaml", ".yml")
_MAX_ARCHIVE_MEMBERS: Final = 256


@dataclass(frozen=True, eq=False)
class PolicyBundle:
    """A validated bundle: its files, its content version, and every file parsed.

    Build one with :meth:`from_files` or :func:`load_bundle`. Bundles are equal when their
    versions are.
    """

    files: Mapping[str, str]
    version: str
    policy: PolicyTable = field(repr=False)
    gates: GatesSection = field(repr=False)
    approvals: ApprovalsSection = field(repr=False)
    privacy: PrivacySection = field(repr=False)
    maturity: MaturitySection = field(repr=False)
    audit: AuditSection | None = field(repr=False)

    @classmethod
    def from_files(cls, files: Mapping[str, str]) -> PolicyBundle:
        """Validate a bundle given as file name -> text.

        Bundles are immutable, so validating the same content again returns the same object.

        Raises:
            BundleError: the bundle is invalid; the message names the file and the problem.
        """
        with _VALIDATION_LOCK:
            return _validated(tuple(sorted(files.items())))

    @property
    def roles(self) -> frozenset[str]:
        """Every role ``policy.csv`` defines."""
        return self.policy.roles

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PolicyBundle) and other.version == self.version

    def __hash__(self) -> int:
        return hash(self.version)


def bundle_version(files: Mapping[str, str]) -> str:
    """The content version of a set of bundle files."""
    canonical = json.dumps(sorted(files.items()), ensure_ascii=False, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# Validation parses conditions with Python's ast module (ours and pycasbin's), which is not
# thread-safe on Python 3.11: concurrent parses fail with "AST constructor recursion depth
# mismatch". Requests and run workers validate bundles on many threads, so one at a time.
_VALIDATION_LOCK = threading.Lock()


@functools.lru_cache(maxsize=16)
def _validated(items: tuple[tuple[str, str], ...]) -> PolicyBundle:
    files = dict(items)
    unknown = sorted(set(files) - {*BUNDLE_FILES, *OPTIONAL_FILES})
    if unknown:
        raise BundleError(
            f"unknown file {', '.join(unknown)}; a bundle holds {', '.join(BUNDLE_FILES)} "
            f"and optionally {', '.join(OPTIONAL_FILES)}"
        )
    missing = [name for name in BUNDLE_FILES if name not in files]
    if missing:
        raise BundleError(f"missing file {', '.join(missing)}")
    for name, text in items:
        if len(text.encode("utf-8")) > MAX_FILE_BYTES:
            raise BundleError(f"{name} is larger than {MAX_FILE_BYTES} bytes")
    check_model(files["model.conf"])
    table = parse_policy_csv(files["policy.csv"])
    try:
        gates = parse_document("gates.yaml", files["gates.yaml"], GatesSection)
        approvals = parse_document("approvals.yaml", files["approvals.yaml"], ApprovalsSection)
        privacy = parse_document("privacy.yaml", files["privacy.yaml"], PrivacySection)
        maturity = parse_document("maturity.yaml", files["maturity.yaml"], MaturitySection)
        audit = (
            parse_document("audit.yaml", files["audit.yaml"], AuditSection)
            if "audit.yaml" in files
            else None
        )
    except ValueError as exc:
        raise BundleError(str(exc)) from None
    undefined = sorted(approvals.roles - table.roles)
    if undefined:
        raise BundleError(
            f"approvals.yaml: role {', '.join(undefined)} is not defined in policy.csv "
            f"(defined roles: {', '.join(sorted(table.roles))})"
        )
    check_policy(files["model.conf"], table)
    return PolicyBundle(
        files=MappingProxyType(files),
        version=bundle_version(files),
        policy=table,
        gates=gates,
        approvals=approvals,
        privacy=privacy,
        maturity=maturity,
        audit=audit,
    )


def load_bundle(path: Path) -> PolicyBundle:
    """Load and validate the bundle in a folder or a ``.tar.gz``.

    Raises:
        BundleError: the path holds no readable bundle, or the bundle is invalid.
    """
    if path.is_dir():
        return PolicyBundle.from_files(_read_folder(path))
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        return PolicyBundle.from_files(_read_archive(path))
    raise BundleError(f"{path} is neither a bundle folder nor a .tar.gz of one")


def _is_content(name: str) -> bool:
    return name.endswith(_CONTENT_SUFFIXES)


def _decode(name: str, data: bytes) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise BundleError(f"{name} is larger than {MAX_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{name} is not UTF-8 text") from None


def _read_folder(folder: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for entry in sorted(folder.iterdir()):
        if not _is_content(entry.name):
            continue
        if entry.is_symlink():
            raise BundleError(f"{entry.name} is a link; bundle files must be regular files")
        if not entry.is_file():
            raise BundleError(f"{entry.name} is not a regular file")
        if entry.stat().st_size > MAX_FILE_BYTES:
            raise BundleError(f"{entry.name} is larger than {MAX_FILE_BYTES} bytes")
        files[entry.name] = _decode(entry.name, entry.read_bytes())
    return files


def _read_archive(archive_path: Path) -> dict[str, str]:
    """The bundle files of a tarball, at its top level or in its single top-level folder.

    Members are read in memory, never extracted; links, devices, absolute or ``..`` paths and
    oversized members are refused.
    """
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            members: dict[PurePosixPath, tarfile.TarInfo] = {}
            for count, member in enumerate(archive, start=1):
                if count > _MAX_ARCHIVE_MEMBERS:
                    raise BundleError(
                        f"{archive_path.name} has more than {_MAX_ARCHIVE_MEMBERS} members"
                    )
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise BundleError(
                        f"{archive_path.name}: member {member.name} leaves the bundle"
                    )
                if member.issym() or member.islnk():
                    raise BundleError(f"{archive_path.name}: member {member.name} is a link")
                if member.isdir():
                    continue
                if not member.isfile():
                    raise BundleError(f"{archive_path.name}: member {member.name} is not a file")
                if member.size > MAX_FILE_BYTES:
                    raise BundleError(
                        f"{archive_path.name}: member {member.name} is larger than "
                        f"{MAX_FILE_BYTES} bytes"
                    )
                members[PurePosixPath(*[p for p in name.parts if p != "."])] = member
            root = _root(members)
            return {
                path.name: _decode(path.name, _read_member(archive, member))
                for path, member in members.items()
                if path.parent == root and _is_content(path.name)
            }
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"{archive_path.name} is not a readable .tar.gz: {exc}") from None


def _root(members: Mapping[PurePosixPath, tarfile.TarInfo]) -> PurePosixPath:
    """The folder holding the bundle: the top level, or the one folder everything is in."""
    tops = {path.parts[0] for path in members if len(path.parts) > 1}
    if len(tops) == 1 and not any(len(path.parts) == 1 for path in members):
        return PurePosixPath(tops.pop())
    return PurePosixPath(".")


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    stream = archive.extractfile(member)
    if stream is None:
        raise BundleError(f"member {member.name} cannot be read")
    with stream:
        return stream.read(MAX_FILE_BYTES + 1)
