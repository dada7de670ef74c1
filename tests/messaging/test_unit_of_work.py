"""``on_end``: what a store holds for a unit of work is handed back when the outermost unit
ends, whether it succeeded or failed, and never outlives it."""

from __future__ import annotations

import pytest

from ecopy.messaging.collector import (
    collecting,
    on_end,
    on_rollback,
    send_or_collect,
    unit_of_work,
)
from ecopy.messaging.message import Message


class Failed(Exception):
    pass


def test_outside_a_unit_nothing_is_kept():
    ended: list[bool] = []

    assert on_end(ended.append) is False
    assert ended == []


def test_a_unit_that_succeeds_ends_with_true_after_nothing_was_undone():
    events: list[str] = []

    with unit_of_work():
        on_rollback(lambda: events.append("undone"))
        assert on_end(lambda committed: events.append(f"ended {committed}"))
        send_or_collect(lambda: events.append("sent"))
        assert events == []

    assert events == ["ended True", "sent"]


def test_a_unit_that_fails_ends_with_false_after_its_writes_were_undone():
    events: list[str] = []

    with pytest.raises(Failed), unit_of_work():
        on_end(lambda committed: events.append(f"ended {committed}"))
        on_rollback(lambda: events.append("undone"))
        send_or_collect(lambda: events.append("sent"))
        raise Failed

    assert events == ["undone", "ended False"]


@pytest.mark.parametrize("outer_fails", [False, True], ids=["outer-succeeds", "outer-fails"])
def test_a_nested_unit_ends_with_the_outermost(outer_fails):
    ended: list[bool] = []

    def outer(_message: Message) -> None:
        try:
            with unit_of_work():
                on_end(ended.append)
                raise Failed
        except Failed:
            pass
        assert ended == []  # still held: the outer unit decides
        if outer_fails:
            raise Failed

    run = collecting(outer)
    if outer_fails:
        with pytest.raises(Failed):
            run(Message("x"))
    else:
        run(Message("x"))

    assert ended == [not outer_fails]


def test_a_failing_send_does_not_keep_what_a_later_callback_releases():
    ended: list[bool] = []

    def broken() -> None:
        raise ConnectionError("channel down")

    with pytest.raises(ConnectionError), unit_of_work():
        send_or_collect(broken)
        on_end(ended.append)

    assert ended == [True]  # the writes were kept; the held lock is given back
