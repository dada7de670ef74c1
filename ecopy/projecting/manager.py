"""``ProjectionManager``: the lifecycle of an application's projections (``app.projections``,
injectable into handlers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ecopy.projecting.engine import Projection, ProjectionNotFound, events_of


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    mode: str
    partitioned: bool
    status: str
    """``"uninitialized"``, ``"ready"`` or ``"rebuilding"``."""
    position: int | None
    """The global position of the last event handled."""
    head: int
    """The highest committed position of the projection's streams."""
    lag: int | None
    """How many committed events of its streams it has not handled yet."""
    partitions: int


class ProjectionManager:
    """Initialize, catch up, rebuild, reset and delete projections by name."""

    def __init__(self, projections: Mapping[str, Projection]) -> None:
        self._projections = projections  # filled in once bootstrap compiled them

    def _named(self, name: str) -> Projection:
        found = self._projections.get(name)
        if found is None:
            known = ", ".join(sorted(self._projections)) or "none"
            raise ProjectionNotFound(f"no projection named {name!r}; known projections: {known}")
        return found

    def names(self) -> list[str]:
        return sorted(self._projections)

    def list(self) -> list[ProjectionStatus]:
        return [self.status(name) for name in self.names()]

    def status(self, name: str) -> ProjectionStatus:
        projection = self._named(name)
        record = projection.store().get(name)
        event_store = projection.event_store()
        head = event_store.last_position(projection.streams)
        position = None if record is None else record.position
        count_after = getattr(event_store, "count_after", None)
        lag = (
            count_after(position or 0, projection.streams)
            if count_after is not None  # counts without reading: a stuck projection shows
            else sum(1 for _ in events_of(projection.streams, event_store, position or 0))
        )
        return ProjectionStatus(
            name=name,
            mode=projection.mode,
            partitioned=False,
            status="uninitialized" if record is None else record.status,
            position=position,
            head=head,
            lag=lag,
            partitions=0,
        )

    def state(self, name: str, partition: str = "") -> Any:
        """The state the projection keeps (its ``T``; ``T()`` before anything was handled)."""
        projection = self._named(name)
        record = projection.store().get(name, partition)
        if record is None:
            return projection.state.initial()
        return projection.state.from_json(record.state)

    def init(self, name: str) -> bool:
        """Create the projection's row at position 0 and run its initialization hook; False
        when it was initialized already. It does not catch up."""
        projection = self._named(name)
        with projection.transaction():
            return projection.initialize()

    def trigger(self, name: str, partition: str | None = None) -> int:
        """Catch up now; returns how many events were handled."""
        return self._named(name).catch_up()

    def backfill(self, name: str, *, progress: Callable[[int], None] | None = None) -> int:
        """Catch up from the current position (a ``manual_kick_off`` projection after
        ``init``), live; returns how many events were handled.

        ``progress`` is called after each batch with the number of events handled so far,
        e.g. to show how a long backfill advances; each batch commits on its own."""
        projection = self._named(name)
        with projection.transaction():
            projection.initialize()
        return projection.catch_up(progress=progress)

    def rebuild(
        self,
        name: str,
        partition: str | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Run the reset hooks and handle every event again from position 0, not live, in one
        transaction: a failure leaves the old tables, state and position.

        ``progress`` is called after each batch with the number of events handled so far;
        nothing is committed before the last batch."""
        projection = self._named(name)
        with projection.transaction():
            projection.start_over(status="rebuilding")
            handled = projection.catch_up(live=False, progress=progress)
            store = projection.store()
            record = store.claim(name)
            assert record is not None
            store.save(replace(record, status="ready"))
        return handled

    def reset(self, name: str) -> None:
        """Run the reset hooks, and set the position back to 0 and the state to ``T()``."""
        projection = self._named(name)
        with projection.transaction():
            projection.start_over(status="ready")

    def delete(self, name: str) -> None:
        """Run the delete hooks and remove the projection's rows; the next trigger starts it
        afresh."""
        projection = self._named(name)
        with projection.transaction():
            projection.run_hooks("delete")
            projection.store().delete(name)
