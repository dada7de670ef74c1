"""Projections: read models fed by the event store, kept at a position that never skips an
event (see docs/projections.md)."""

from ecopy.projecting.declaration import (
    ProjectionState,
    projection,
    projection_delete,
    projection_flush,
    projection_initialization,
    projection_reset,
)
from ecopy.projecting.engine import ProjectionError, ProjectionNotFound
from ecopy.projecting.manager import ProjectionManager, ProjectionStatus
from ecopy.projecting.state import (
    InMemoryProjectionStateStore,
    ProjectionRecord,
    ProjectionStateStore,
)

__all__ = [
    "InMemoryProjectionStateStore",
    "ProjectionError",
    "ProjectionManager",
    "ProjectionNotFound",
    "ProjectionRecord",
    "ProjectionState",
    "ProjectionStateStore",
    "ProjectionStatus",
    "projection",
    "projection_delete",
    "projection_flush",
    "projection_initialization",
    "projection_reset",
]
