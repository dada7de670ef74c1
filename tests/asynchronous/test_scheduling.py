"""Scheduled consumers (DESIGN §3.5): ``@scheduled`` methods run as consumers on a cron or a
fixed rate, by the application's clock; what they return goes to their request channel."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ecopy import QueueChannel, internal_handler, scheduled
from ecopy.testing import bootstrap_flow_testing

NIGHT = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Report:
    kind: str
    number: int


class Reporting:
    def __init__(self) -> None:
        self.produced = 0
        self.filed: list[Report] = []

    @scheduled("reports", endpoint_id="nightly_report", cron="0 2 * * *")
    def nightly(self) -> Report:
        self.produced += 1
        return Report("nightly", self.produced)

    @scheduled("reports", endpoint_id="stock_check", fixed_rate_ms=60_000)
    def check_stock(self) -> Report:
        self.produced += 1
        return Report("stock", self.produced)

    @scheduled("reports", endpoint_id="nothing_to_say", fixed_rate_ms=1000)
    def quiet(self) -> None:
        return None

    @internal_handler("reports")
    def file(self, report: Report) -> None:
        self.filed.append(report)


def reporting_flow(reporting: Reporting, **options: object):
    return bootstrap_flow_testing(
        classes=[Reporting], services=[reporting], start_time=NIGHT, **options
    )


def test_a_cron_schedule_runs_when_due_and_its_result_reaches_the_request_channel():
    reporting = Reporting()
    flow = reporting_flow(reporting)

    flow.run("nightly_report")
    flow.advance_time(timedelta(minutes=59)).run("nightly_report")
    assert reporting.filed == []

    flow.advance_time(timedelta(minutes=1)).run("nightly_report")
    assert reporting.filed == [Report("nightly", 1)]

    flow.advance_time(timedelta(hours=23, minutes=59)).run("nightly_report")
    assert reporting.filed == [Report("nightly", 1)]

    flow.advance_time(timedelta(minutes=1)).run("nightly_report")
    assert reporting.filed == [Report("nightly", 1), Report("nightly", 2)]


def test_a_cron_schedule_runs_once_for_a_missed_stretch():
    reporting = Reporting()
    flow = reporting_flow(reporting)
    flow.run("nightly_report")

    flow.change_time_to(datetime(2026, 3, 5, 12, 0, tzinfo=UTC)).run("nightly_report")

    assert reporting.filed == [Report("nightly", 1)]


def test_a_fixed_rate_schedule_runs_at_once_then_every_period():
    reporting = Reporting()
    flow = reporting_flow(reporting)

    flow.run("stock_check")
    assert reporting.filed == [Report("stock", 1)]

    flow.advance_time(59).run("stock_check")
    assert len(reporting.filed) == 1

    flow.advance_time(1).run("stock_check")
    assert reporting.filed == [Report("stock", 1), Report("stock", 2)]


def test_a_scheduled_method_returning_none_sends_nothing():
    reporting = Reporting()
    flow = reporting_flow(reporting)

    flow.run("nothing_to_say").advance_time(1).run("nothing_to_say")

    assert reporting.filed == []


def test_the_result_can_go_to_a_queue_and_be_handled_by_its_consumer():
    reporting = Reporting()
    flow = reporting_flow(reporting, enable_asynchronous_processing=[QueueChannel("reports")])
    flow.run("nightly_report")

    flow.advance_time(timedelta(hours=1)).run("nightly_report")
    assert reporting.filed == []
    assert len(flow.system.channel("reports")) == 1

    flow.run("reports")
    assert reporting.filed == [Report("nightly", 1)]


class FlakyReporting:
    def __init__(self) -> None:
        self.calls = 0

    @scheduled("reports", endpoint_id="flaky_report", fixed_rate_ms=60_000)
    def produce(self) -> Report:
        self.calls += 1
        raise ConnectionError("warehouse database unavailable")

    @internal_handler("reports")
    def file(self, report: Report) -> None:
        pass


def test_a_failing_scheduled_method_is_logged_and_runs_again_when_next_due(caplog):
    reporting = FlakyReporting()
    flow = bootstrap_flow_testing(classes=[FlakyReporting], services=[reporting], start_time=NIGHT)

    with caplog.at_level(logging.ERROR, logger="ecopy"):
        flow.run("flaky_report")
        flow.advance_time(30).run("flaky_report")
        flow.advance_time(30).run("flaky_report")

    assert reporting.calls == 2
    assert any("flaky_report" in record.getMessage() for record in caplog.records)
