"""The audit tests read checkpoints right after they write: sign one on any growth."""

from __future__ import annotations

import pytest

from control_plane.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"audit_checkpoint_seconds": 0})
