"""``audit.yaml``: how long the audit trail keeps its records in the store.

::

    retention_days: 400   # records older than this may be archived, then pruned

``govplane audit prune`` archives the records older than the retention to a verified export
and only then deletes them. The retention is at least 183 days: the EU AI Act (Art. 19 and
26(6)) asks providers and deployers of high-risk systems to keep their logs at least six
months. A bundle without ``audit.yaml`` sets no retention, and then nothing is ever pruned.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import Field, StrictInt

from policies.documents import Document

MIN_RETENTION_DAYS: Final = 183


class AuditSection(Document):
    """The parsed ``audit.yaml``."""

    retention_days: Annotated[StrictInt, Field(ge=MIN_RETENTION_DAYS)]
