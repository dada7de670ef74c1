"""Where projections keep how far they got: the position storage port and its in-memory
implementation.

A projection keeps one row per partition (``""`` for a global projection): the position of the
last event it handled, its state as JSON, its status, and an opaque checkpoint for stores that
read in another order than positions. The engine works on a row in a transaction: ``claim``
locks it until the transaction ends, so two workers never handle one row's events at once, and
whatever the batch saved is undone with everything else when the transaction rolls back.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from pydantic_core import from_json, to_json

from ecopy.errors import EcopyError
from ecopy.messaging.collector import on_end

_STATUSES = ("ready", "rebuilding")


@dataclass(frozen=True)
class ProjectionRecord:
    """One row of a projection: ``partition`` is ``""`` for a global projection, else the key
    of the partition (an aggregate id). ``position`` is the global position of the last event
    handled (0: none yet); ``state`` and ``checkpoint`` are JSON values as a store returns
    them (see :class:`ProjectionStateStore`); ``status`` is ``"ready"`` or ``"rebuilding"``.
    Frozen: the engine saves ``dataclasses.replace(record, position=..., state=...)``.
    """

    projection: str
    partition: str = ""
    position: int = 0
    state: Any = None
    status: str = "ready"
    checkpoint: Any = None

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(
                f"projection {self.projection!r}: status {self.status!r} is not one of "
                f"{', '.join(map(repr, _STATUSES))}"
            )
        if isinstance(self.position, bool) or not isinstance(self.position, int):
            raise TypeError(
                f"projection {self.projection!r}: position must be an int (the global position "
                f"of the last event handled), got {self.position!r}; keep a store's own cursor "
                f"in checkpoint"
            )
        if self.position < 0:
            raise ValueError(
                f"projection {self.projection!r}: position must be 0 or more, got {self.position}"
            )


@runtime_checkable
class ProjectionStateStore(Protocol):
    """The port where projections keep their rows, keyed by ``(projection, partition)``.

    Every method joins the transaction (or in-memory unit of work) in progress: what it wrote
    is undone if that fails. ``state`` and ``checkpoint`` are kept as JSON: a dict, list,
    string, number, boolean or ``None`` comes back equal; a dataclass or pydantic model comes
    back as the JSON object of its fields, which the engine converts to the projection's
    state type. A value that has no JSON form is refused (an ``EcopyError``) and nothing is
    written.
    """

    def initialize(self, projection: str, partition: str = "") -> bool:
        """Create the row at position 0, status ``"ready"``, no state, unless it exists;
        ``True`` when this call created it. Concurrent calls create one row, and exactly one
        of them returns ``True`` (a second caller waits for the creating transaction to end:
        if that rolls back, the second creates the row)."""

    def claim(self, projection: str, partition: str = "") -> ProjectionRecord | None:
        """The row, locked until the transaction in progress ends: another ``claim`` of it
        waits until then. ``None`` when there is no such row."""

    def get(self, projection: str, partition: str = "") -> ProjectionRecord | None:
        """The row as last committed (or as this transaction wrote it), without a lock."""

    def save(self, record: ProjectionRecord) -> None:
        """Write the row (creating it if it does not exist)."""

    def delete(self, projection: str) -> int:
        """Remove every row of ``projection``, its partitions included; returns how many."""

    def partitions(self, projection: str) -> list[str]:
        """The partition keys of ``projection`` (every key but ``""``), sorted."""

    def projections(self) -> list[str]:
        """The names of the projections that have a row, sorted."""


def json_value(value: Any, what: str) -> Any:
    """``value`` as JSON decodes it: a new object, equal for JSON values, the fields of a
    dataclass or pydantic model as an object. ``what`` names it in the error."""
    if value is None:
        return None
    return from_json(json_text(value, what))


def json_text(value: Any, what: str) -> str:
    """The JSON text of ``value`` (see :func:`json_value`)."""
    try:
        return to_json(value).decode()
    except Exception as error:
        raise EcopyError(
            f"the {what} cannot be kept as JSON ({error}); keep dicts, lists, strings, numbers, "
            f"booleans, dataclasses or pydantic models in it"
        ) from error


def _kept(record: ProjectionRecord) -> ProjectionRecord:
    """The record as the store keeps it: state and checkpoint as JSON decodes them."""
    where = f"projection {record.projection!r}"
    if record.partition:
        where += f" partition {record.partition!r}"
    return replace(
        record,
        state=json_value(record.state, f"state of {where}"),
        checkpoint=json_value(record.checkpoint, f"checkpoint of {where}"),
    )


def _copied(record: ProjectionRecord | None) -> ProjectionRecord | None:
    """A record to hand out: changing its state must not change the store."""
    if record is None or (record.state is None and record.checkpoint is None):
        return record
    return replace(
        record, state=copy.deepcopy(record.state), checkpoint=copy.deepcopy(record.checkpoint)
    )


_Key = tuple[str, str]


class _Hold:
    """A row's lock, held by the unit of work of one thread until that unit ends, and the
    row's committed value once that unit wrote it."""

    __slots__ = ("before", "owner", "until_unit_ends", "wrote")

    def __init__(self, owner: int) -> None:
        self.owner = owner
        self.wrote = False
        self.before: ProjectionRecord | None = None
        self.until_unit_ends = False


class InMemoryProjectionStateStore(ProjectionStateStore):
    """Projection rows in memory, with the locking and isolation of a database table.

    Thread-safe. Every write (``initialize``, ``save``, ``delete``) and every ``claim`` takes
    the row's lock, held until the in-memory unit of work in progress ends
    (``ecopy.messaging.collector``): another thread that claims or writes the row waits until
    then, as for a database row lock. A unit that fails leaves the rows as they were. ``get``,
    ``partitions`` and ``projections`` never wait and see what is committed (and the writes of
    the caller's own unit). Outside a unit of work each call commits on its own, as a statement
    outside a transaction: ``claim`` waits for the row's holder, then returns the row without
    keeping the lock.

    A lock belongs to the thread whose unit took it (several asyncio tasks in one thread
    share it).
    """

    def __init__(self) -> None:
        self._guard = threading.Condition()
        self._records: dict[_Key, ProjectionRecord] = {}  # writes of units in progress too
        self._holds: dict[_Key, _Hold] = {}

    # -- the port ---------------------------------------------------------------------

    def initialize(self, projection: str, partition: str = "") -> bool:
        key = (projection, partition)
        with self._guard:
            hold = self._take(key)
            try:
                if key in self._records:
                    return False
                self._write(key, hold, ProjectionRecord(projection, partition))
                return True
            finally:
                self._release_unless_held(key, hold)

    def claim(self, projection: str, partition: str = "") -> ProjectionRecord | None:
        key = (projection, partition)
        with self._guard:
            hold = self._take(key)
            record = self._records.get(key)
            if record is None and not hold.wrote:
                # Nothing to lock, as SELECT ... FOR UPDATE of a missing row locks nothing.
                self._release(key, hold)
            else:
                self._release_unless_held(key, hold)
        return _copied(record)

    def get(self, projection: str, partition: str = "") -> ProjectionRecord | None:
        with self._guard:
            record = self._visible((projection, partition))
        return _copied(record)

    def save(self, record: ProjectionRecord) -> None:
        kept = _kept(record)
        key = (record.projection, record.partition)
        with self._guard:
            hold = self._take(key)
            self._write(key, hold, kept)
            self._release_unless_held(key, hold)

    def delete(self, projection: str) -> int:
        with self._guard:
            keys = sorted(key for key in {*self._records, *self._holds} if key[0] == projection)
            holds = [(key, self._take(key)) for key in keys]
            deleted = 0
            for key, hold in holds:
                if key in self._records:
                    self._write(key, hold, None)
                    deleted += 1
                self._release_unless_held(key, hold)
            return deleted

    def partitions(self, projection: str) -> list[str]:
        with self._guard:
            return sorted(
                partition
                for name, partition in self._visible_keys()
                if name == projection and partition
            )

    def projections(self) -> list[str]:
        with self._guard:
            return sorted({name for name, _ in self._visible_keys()})

    # -- row locks (called with the guard held) ---------------------------------------

    def _take(self, key: _Key) -> _Hold:
        """The row's lock for this thread's unit of work, once no other unit holds it."""
        me = threading.get_ident()
        hold = self._holds.get(key)
        while hold is not None and hold.owner != me:
            self._guard.wait()
            hold = self._holds.get(key)
        if hold is not None:
            return hold  # this unit holds it already
        hold = self._holds[key] = _Hold(me)
        hold.until_unit_ends = on_end(lambda committed: self._end(key, hold, committed))
        return hold

    def _write(self, key: _Key, hold: _Hold, record: ProjectionRecord | None) -> None:
        if hold.until_unit_ends and not hold.wrote:
            hold.wrote, hold.before = True, self._records.get(key)
        if record is None:
            del self._records[key]
        else:
            self._records[key] = record

    def _release_unless_held(self, key: _Key, hold: _Hold) -> None:
        """Outside a unit of work a call commits at once: its lock goes with it."""
        if not hold.until_unit_ends:
            self._release(key, hold)

    def _release(self, key: _Key, hold: _Hold) -> None:
        if self._holds.get(key) is hold:
            del self._holds[key]
            self._guard.notify_all()

    def _end(self, key: _Key, hold: _Hold, committed: bool) -> None:
        """The unit that held the row ended: undo its write if it failed, let the next in."""
        with self._guard:
            if not committed and hold.wrote:
                if hold.before is None:
                    self._records.pop(key, None)
                else:
                    self._records[key] = hold.before
            self._release(key, hold)

    # -- what other units see ---------------------------------------------------------

    def _visible(self, key: _Key) -> ProjectionRecord | None:
        hold = self._holds.get(key)
        if hold is not None and hold.wrote and hold.owner != threading.get_ident():
            return hold.before
        return self._records.get(key)

    def _visible_keys(self) -> list[_Key]:
        keys = {*self._records, *self._holds}
        return [key for key in keys if self._visible(key) is not None]
