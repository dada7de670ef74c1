"""``backfill`` and ``rebuild`` tell how far they got after each batch, for a command line
to show while a long catch-up runs."""

from __future__ import annotations

from typing import Annotated

from ecopy import event_handler
from ecopy.projecting import ProjectionState, projection
from ecopy.testing import bootstrap_flow_testing
from tests.projecting.app import Account, Deposit, OpenAccount


@projection("counted", from_streams=[Account], manual_kick_off=True, batch_size=2)
class Counted:
    @event_handler("*")
    def any_event(self, event: object, count: Annotated[dict[str, int], ProjectionState]) -> dict:
        return {"events": count.get("events", 0) + 1}


def test_backfill_and_rebuild_report_the_events_handled_so_far_after_each_batch():
    flow = bootstrap_flow_testing(classes=[Account, Counted], services=[Counted()])
    flow.send_command(OpenAccount("a-1")).send_command(Deposit("a-1", 1))
    flow.send_command(Deposit("a-1", 2))
    flow.projections.init("counted")
    backfilled: list[int] = []
    rebuilt: list[int] = []

    assert flow.projections.backfill("counted", progress=backfilled.append) == 3
    assert flow.projections.rebuild("counted", progress=rebuilt.append) == 3

    assert backfilled == [2, 3]
    assert rebuilt == [2, 3]
    assert flow.get_projection_state("counted") == {"events": 3}


def test_a_catch_up_with_nothing_to_read_reports_nothing():
    flow = bootstrap_flow_testing(classes=[Account, Counted], services=[Counted()])
    flow.projections.init("counted")
    reported: list[int] = []

    assert flow.projections.backfill("counted", progress=reported.append) == 0

    assert reported == []
