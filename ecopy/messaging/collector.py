"""The unit of work in memory: what a command or an asynchronous handler does is held until it
succeeded — its asynchronous sends (the message collector) and the writes of the in-memory
stores. On failure the sends are dropped and the writes undone, as a rolled-back database
transaction would (DESIGN §3.7), so flow tests see what production sees.

Units nest: a command sent from inside a handler holds its own sends, hands them to the outer
unit when it succeeds, and drops them when it fails, even when the outer handler catches that
failure and goes on. Its store writes stay with the outer unit either way, as in a database
transaction that the nested command joined: they are undone only if the outermost fails.

What a store holds until the unit ends, whatever its outcome (an in-memory row lock, as a
database holds a row lock until commit or rollback), it hands to :func:`on_end`: the outermost
unit calls it back with ``True`` once it succeeded, ``False`` once it failed and was undone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ecopy.messaging.endpoint import Invoker
from ecopy.messaging.message import Message

Send = Callable[[], Any]
Undo = Callable[[], None]
End = Callable[[bool], None]
logger = logging.getLogger("ecopy.collector")


class _Undo:
    """An undo among the sends of a unit (one list per unit keeps the hot path to what the
    collector alone cost)."""

    __slots__ = ("undo",)

    def __init__(self, undo: Undo) -> None:
        self.undo = undo


class _End:
    """A callback for the end of the outermost unit, kept whether the units it passes through
    succeed or fail."""

    __slots__ = ("end",)

    def __init__(self, end: End) -> None:
        self.end = end


_unit: ContextVar[list[Any] | None] = ContextVar("ecopy_unit_of_work", default=None)


def send_or_collect(send: Send) -> None:
    """Run ``send`` now, or later when a unit of work is in progress."""
    unit = _unit.get()
    if unit is None:
        send()
    else:
        unit.append(send)


def on_rollback(undo: Undo) -> None:
    """Have ``undo`` run if the unit of work in progress fails (an in-memory store's way to
    take part in it); nothing happens outside one, as a store write then commits on its own."""
    unit = _unit.get()
    if unit is not None:
        unit.append(_Undo(undo))


def on_end(end: End) -> bool:
    """Have ``end(committed)`` run when the outermost unit of work in progress ends: with
    ``True`` after it succeeded, with ``False`` after it failed and its writes were undone.
    Returns ``False``, keeping nothing, outside a unit of work (the caller then ends at once
    what it would have held)."""
    unit = _unit.get()
    if unit is None:
        return False
    unit.append(_End(end))
    return True


def collecting(invoker: Invoker) -> Invoker:
    """``invoker`` as a unit of work: its sends leave only after it succeeded, its in-memory
    writes are undone if it fails. (The hot path of every command: no context manager.)"""
    get, set_unit, reset = _unit.get, _unit.set, _unit.reset

    def run(message: Message) -> Any:
        outer = get()
        unit: list[Any] = []
        token = set_unit(unit)
        try:
            result = invoker(message)
        except BaseException:
            reset(token)
            if unit:
                _failed(unit, outer)
            raise
        reset(token)
        if outer is not None:
            outer.extend(unit)
        elif unit:
            _succeeded(unit)
        return result

    return run


@contextmanager
def unit_of_work() -> Iterator[None]:
    """A unit of work in memory around a block (see the module documentation)."""
    outer = _unit.get()
    unit: list[Any] = []
    token = _unit.set(unit)
    try:
        yield
    except BaseException:
        _unit.reset(token)
        _failed(unit, outer)
        raise
    _unit.reset(token)
    if outer is not None:
        outer.extend(unit)
    elif unit:
        _succeeded(unit)


def _succeeded(unit: list[Any]) -> None:
    """The outermost unit succeeded: its sends leave, in order, and every ``on_end`` callback
    runs, even when a send fails (a held lock must never outlive its unit)."""
    for index, item in enumerate(unit):
        kind = item.__class__
        if kind is _End:
            _call_end(item, True)
        elif kind is not _Undo:
            try:
                item()
            except BaseException:
                for later in unit[index + 1 :]:
                    if later.__class__ is _End:
                        _call_end(later, True)
                raise


def _failed(unit: list[Any], outer: list[Any] | None) -> None:
    kept = [item for item in unit if item.__class__ is _Undo or item.__class__ is _End]
    if outer is not None:
        outer.extend(kept)  # the outer unit decides, as a joined transaction does
        return
    for item in reversed(kept):
        if item.__class__ is _Undo:
            try:
                item.undo()
            except Exception:
                logger.exception("undoing a write of a failed unit of work failed")
    for item in kept:
        if item.__class__ is _End:
            _call_end(item, False)


def _call_end(item: _End, committed: bool) -> None:
    try:
        item.end(committed)
    except Exception:
        logger.exception("ending a unit of work: a store's end callback failed")
