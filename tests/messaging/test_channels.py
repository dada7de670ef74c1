"""Queue channels: an internal handler on a ``QueueChannel`` is a consumer; its messages wait
until the consumer runs (DESIGN §3.5, §3.6)."""

from dataclasses import dataclass

import pytest

import ecopy
from ecopy import (
    EcopyError,
    QueueChannel,
    ServiceConfiguration,
    command_handler,
    internal_handler,
    service_context,
)
from ecopy.testing import bootstrap_flow_testing


@dataclass
class SendInvoice:
    order_id: str


class Invoicing:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.broken = False

    @command_handler(output_channel="invoices")
    def request(self, command: SendInvoice) -> str:
        return command.order_id

    @internal_handler("invoices")
    def send(self, order_id: str) -> None:
        if self.broken:
            raise ConnectionError("mail server down")
        self.sent.append(order_id)


def with_queue():
    return ServiceConfiguration(extensions=[QueueChannel("invoices")])


def test_messages_wait_on_the_queue_until_the_consumer_runs():
    invoicing = Invoicing()
    app = ecopy.bootstrap(classes=[Invoicing], services=[invoicing], config=with_queue())

    assert app.command_bus.send(SendInvoice("o-1")) is None
    app.command_bus.send(SendInvoice("o-2"))
    assert invoicing.sent == []

    handled = app.run("invoices", finish_when_no_messages=True)

    assert handled == 2
    assert invoicing.sent == ["o-1", "o-2"]
    assert app.run("invoices", finish_when_no_messages=True) == 0


def test_handled_message_limit_stops_the_consumer():
    invoicing = Invoicing()
    app = ecopy.bootstrap(classes=[Invoicing], services=[invoicing], config=with_queue())
    for order_id in ("o-1", "o-2", "o-3"):
        app.command_bus.send(SendInvoice(order_id))

    assert app.run("invoices", handled_message_limit=2) == 2
    assert invoicing.sent == ["o-1", "o-2"]
    assert app.run("invoices", finish_when_no_messages=True) == 1
    assert invoicing.sent == ["o-1", "o-2", "o-3"]


def test_flow_run_processes_what_is_queued():
    invoicing = Invoicing()
    flow = bootstrap_flow_testing(classes=[Invoicing], services=[invoicing], config=with_queue())

    flow.send_command(SendInvoice("o-1"))
    assert invoicing.sent == []

    flow.run("invoices")

    assert invoicing.sent == ["o-1"]


def test_list_consumers_names_the_queue_and_its_endpoint():
    app = ecopy.bootstrap(classes=[Invoicing], config=with_queue())

    [consumer] = app.list_consumers()

    assert consumer.name == "invoices"
    assert consumer.channel == "invoices"
    assert consumer.endpoints == ("Invoicing.send",)


def test_a_failing_handler_raises_out_of_run_and_the_message_stays_queued():
    invoicing = Invoicing()
    flow = bootstrap_flow_testing(classes=[Invoicing], services=[invoicing], config=with_queue())
    flow.send_command(SendInvoice("o-1")).send_command(SendInvoice("o-2"))
    invoicing.broken = True

    with pytest.raises(ConnectionError, match="mail server down"):
        flow.run("invoices")
    assert invoicing.sent == []

    invoicing.broken = False
    flow.run("invoices")

    assert invoicing.sent == ["o-1", "o-2"]


def test_queued_messages_keep_the_headers_of_the_message_that_caused_them():
    seen = []

    class Audit:
        @command_handler("audit", output_channel="audit_log")
        def audit(self, entry: str) -> str:
            return entry

        @internal_handler("audit_log")
        def write(self, entry: str, message: ecopy.Message) -> None:
            seen.append((entry, message.headers["user"]))

    flow = bootstrap_flow_testing(
        classes=[Audit], config=ServiceConfiguration(extensions=[QueueChannel("audit_log")])
    )
    flow.send_command_with_routing("audit", "logged in", headers={"user": "u-1"})

    flow.run("audit_log")

    assert seen == [("logged in", "u-1")]


def test_a_queue_channel_can_come_from_a_service_context():
    class Channels:
        @service_context
        def channels(self) -> list:
            return [QueueChannel("invoices")]

    invoicing = Invoicing()
    flow = bootstrap_flow_testing(classes=[Invoicing, Channels], services=[invoicing])

    flow.send_command(SendInvoice("o-1")).run("invoices")

    assert invoicing.sent == ["o-1"]


def test_running_an_unknown_consumer_names_the_known_ones():
    app = ecopy.bootstrap(classes=[Invoicing], config=with_queue())

    with pytest.raises(EcopyError, match=r"'invoicez'.*invoices"):
        app.run("invoicez", finish_when_no_messages=True)


@dataclass
class Job:
    number: int


class Jobs:
    def __init__(self) -> None:
        self.done: list[Job] = []

    @command_handler("job.start", output_channel="jobs")
    def start(self, payload: dict) -> object:
        return payload["job"]

    @internal_handler("jobs")
    def work(self, job: Job) -> None:
        self.done.append(job)


def jobs_flow(jobs):
    return bootstrap_flow_testing(
        classes=[Jobs],
        services=[jobs],
        config=ServiceConfiguration(extensions=[QueueChannel("jobs")]),
    )


def test_a_payload_travels_through_a_queue_and_arrives_as_its_class():
    jobs = Jobs()
    flow = jobs_flow(jobs)
    job = Job(3)

    flow.send_command_with_routing("job.start", {"job": job}).run("jobs")

    assert jobs.done == [Job(3)]
    assert jobs.done[0] is not job  # it was serialized on the way, as in production


def test_a_payload_that_cannot_travel_fails_when_it_is_sent():
    jobs = Jobs()
    flow = jobs_flow(jobs)

    with pytest.raises(EcopyError, match="cannot be serialized"):
        flow.send_command_with_routing("job.start", {"job": object()})

    flow.run("jobs")
    assert jobs.done == []
