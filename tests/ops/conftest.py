"""Helpers for the ops tests: a clean drain flag for this process's node, an admin persona."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from careline import drain


@pytest.fixture
def node() -> Iterator[str]:
    """This process's node id, with no drain flag before or after the test, and no socket of an earlier test
    in the drain registry (a communicator a test never disconnected leaves its consumer there, bound to that
    test's closed event loop)."""
    drain.DrainAware._registry.clear()
    current = drain.node_id()
    drain.drain_cancel(node=current)
    yield current
    drain.drain_cancel(node=current)


@pytest.fixture
def clinic_admin(personas: Any) -> Any:
    """`erin`, clinic admin at North (password as the other personas)."""
    from clinics.services import staff_create
    from tests.conftest import PASSWORD

    return staff_create(clinic=personas.north, role="admin", username="erin", password=PASSWORD, first_name="Erin").user
