"""Projections: read models built from the event store (contracts/projections.md)."""

from ecopy.projecting.state import (
    InMemoryProjectionStateStore,
    ProjectionRecord,
    ProjectionStateStore,
)

__all__ = [
    "InMemoryProjectionStateStore",
    "ProjectionRecord",
    "ProjectionStateStore",
]
