"""The unit of work in memory: what a command or an asynchronous handler does is held until it
succeeded — its asynchronous sends (the message collector) and the writes of the in-memory
stores. On failure the sends are dropped and the writes undone, as a rolled-back database
transaction would (DESIGN §3.7), so flow tests see what production sees.

Units nest: a command sent from inside a handler holds its own sends, hands them to the outer
unit when it succeeds, and drops them when it fails, even when the outer handler catches that
failure and goes on. Its store writes stay with the outer unit either way, as in a database
transaction that the nested command joined: they are undone only if the outermost fails.
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
logger = logging.getLogger("ecopy.collector")


class _Undo:
    """An undo among the sends of a unit (one list per unit keeps the hot path to what the
    collector alone cost)."""

    __slots__ = ("undo",)

    def __init__(self, undo: Undo) -> None:
        self.undo = undo


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
        else:
            for item in unit:
                if item.__class__ is not _Undo:
                    item()
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
    else:
        for item in unit:
            if item.__class__ is not _Undo:
                item()


def _failed(unit: list[Any], outer: list[Any] | None) -> None:
    undos = [item for item in unit if item.__class__ is _Undo]
    if outer is not None:
        outer.extend(undos)  # the outer unit decides, as a joined transaction does
        return
    for item in reversed(undos):
        try:
            item.undo()
        except Exception:
            logger.exception("undoing a write of a failed unit of work failed")
