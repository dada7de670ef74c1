"""Optimistic locking for both kinds of aggregate (DESIGN §3.4, §4): a save based on a stale
version raises ``ConcurrencyError`` and changes nothing — no state, no stored event, no
published event. Shown with a ``TargetVersion`` command field and with two handlers racing
on one aggregate."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated, Any

import pytest

from ecopy import (
    AggregateVersion,
    ConcurrencyError,
    Identifier,
    TargetVersion,
    WithEvents,
    aggregate,
    command_handler,
    event_sourcing_aggregate,
    event_sourcing_handler,
)
from ecopy.messaging.naming import type_name
from ecopy.testing import bootstrap_flow_testing


class Gate:
    """Holds every racing handler until all of them have loaded the aggregate."""

    def __init__(self, parties: int = 1) -> None:
        self.barrier = threading.Barrier(parties, timeout=5)

    def wait(self) -> None:
        self.barrier.wait()


@dataclass
class CreateDoc:
    doc_id: str


@dataclass
class EditDoc:
    doc_id: str
    text: str


@dataclass
class EditSeenVersion:
    doc_id: str
    text: str
    seen: Annotated[int, TargetVersion]


@dataclass(frozen=True)
class DocCreated:
    doc_id: str


@dataclass(frozen=True)
class DocEdited:
    doc_id: str
    text: str


@aggregate
@dataclass
class Doc(WithEvents):
    doc_id: Annotated[str, Identifier]
    text: str = ""
    version: Annotated[int, AggregateVersion] = 0

    @command_handler
    @classmethod
    def create(cls, command: CreateDoc) -> Doc:
        return cls(command.doc_id)

    @command_handler
    def edit(self, command: EditDoc, gate: Gate) -> str:
        gate.wait()
        self.text = command.text
        self.record_that(DocEdited(self.doc_id, command.text))
        return command.text

    @command_handler
    def edit_seen(self, command: EditSeenVersion) -> str:
        self.text = command.text
        self.record_that(DocEdited(self.doc_id, command.text))
        return command.text


@aggregate
class Note(WithEvents):
    """State-stored without a version field: the repository still locks optimistically."""

    note_id: Annotated[str, Identifier]

    def __init__(self, note_id: str) -> None:
        self.note_id = note_id
        self.text = ""

    @command_handler
    @classmethod
    def create(cls, command: CreateNote) -> Note:
        return cls(command.note_id)

    @command_handler
    def edit(self, command: EditNote, gate: Gate) -> None:
        gate.wait()
        self.text = command.text
        self.record_that(DocEdited(self.note_id, command.text))


@dataclass
class CreateNote:
    note_id: str


@dataclass
class EditNote:
    note_id: str
    text: str


@event_sourcing_aggregate
@dataclass
class Ledger:
    doc_id: Annotated[str, Identifier]
    text: str = ""
    version: Annotated[int, AggregateVersion] = 0

    @command_handler
    @classmethod
    def create(cls, command: CreateDoc) -> list[object]:
        return [DocCreated(command.doc_id)]

    @command_handler
    def edit(self, command: EditDoc, gate: Gate) -> list[object]:
        gate.wait()
        return [DocEdited(self.doc_id, command.text)]

    @command_handler
    def edit_seen(self, command: EditSeenVersion) -> list[object]:
        return [DocEdited(self.doc_id, command.text)]

    @event_sourcing_handler
    def on_created(self, event: DocCreated) -> None:
        self.doc_id = event.doc_id

    @event_sourcing_handler
    def on_edited(self, event: DocEdited) -> None:
        self.text = event.text


def race(flow: Any, commands: list[Any]) -> tuple[list[Any], list[BaseException]]:
    """Send each command from its own thread; return the results and the errors."""
    results: list[Any] = []
    errors: list[BaseException] = []

    def send(command: Any) -> None:
        try:
            results.append(flow.command_bus.send(command))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=send, args=(command,)) for command in commands]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


# -- a command that says which version it was based on ------------------------------------------


@pytest.mark.parametrize("aggregate_class", [Doc, Ledger])
def test_a_command_for_the_current_version_is_accepted(aggregate_class):
    flow = bootstrap_flow_testing(classes=[aggregate_class], services=[Gate()])
    flow.send_command(CreateDoc("d-1")).discard_recorded_messages()

    flow.send_command(EditSeenVersion("d-1", "first", seen=1))
    flow.send_command(EditSeenVersion("d-1", "second", seen=2))

    doc = flow.get_aggregate(aggregate_class, "d-1")
    assert (doc.text, doc.version) == ("second", 3)
    assert flow.get_recorded_events() == [DocEdited("d-1", "first"), DocEdited("d-1", "second")]


@pytest.mark.parametrize("aggregate_class", [Doc, Ledger])
def test_a_command_for_a_stale_version_fails_and_changes_nothing(aggregate_class):
    flow = bootstrap_flow_testing(classes=[aggregate_class], services=[Gate()])
    flow.send_command(CreateDoc("d-1")).send_command(EditSeenVersion("d-1", "first", seen=1))
    flow.discard_recorded_messages()

    with pytest.raises(ConcurrencyError, match="version"):
        flow.send_command(EditSeenVersion("d-1", "late", seen=1))

    doc = flow.get_aggregate(aggregate_class, "d-1")
    assert (doc.text, doc.version) == ("first", 2)
    assert flow.get_recorded_events() == []


def test_a_stale_event_sourced_command_stores_no_event():
    flow = bootstrap_flow_testing(classes=[Ledger], services=[Gate()])
    flow.send_command(CreateDoc("d-1")).send_command(EditSeenVersion("d-1", "first", seen=1))

    with pytest.raises(ConcurrencyError):
        flow.send_command(EditSeenVersion("d-1", "late", seen=0))

    stored = flow.system.aggregates.event_store.load(type_name(Ledger), "d-1")
    assert [e.payload for e in stored] == [DocCreated("d-1"), DocEdited("d-1", "first")]


def test_creating_an_aggregate_that_already_exists_is_a_concurrency_error():
    flow = bootstrap_flow_testing(classes=[Ledger], services=[Gate()])
    flow.send_command(CreateDoc("d-1")).discard_recorded_messages()

    with pytest.raises(ConcurrencyError):
        flow.send_command(CreateDoc("d-1"))

    assert flow.get_recorded_events() == []
    assert len(flow.system.aggregates.event_store.load(type_name(Ledger), "d-1")) == 1


@pytest.mark.parametrize("aggregate_class", [Doc, Ledger])
def test_the_error_says_which_aggregate_and_which_versions(aggregate_class):
    """For an API to answer 409 with fields, not by parsing the message."""
    flow = bootstrap_flow_testing(classes=[aggregate_class], services=[Gate()])
    flow.send_command(CreateDoc("d-1")).send_command(EditSeenVersion("d-1", "first", seen=1))

    with pytest.raises(ConcurrencyError) as stale:
        flow.send_command(EditSeenVersion("d-1", "late", seen=1))
    with pytest.raises(ConcurrencyError) as again:
        flow.send_command(CreateDoc("d-1"))

    conflict = stale.value
    assert (conflict.aggregate, conflict.identifier) == (aggregate_class.__qualname__, "d-1")
    assert (conflict.expected_version, conflict.actual_version) == (1, 2)
    # A second factory call: the stores report it (state-stored by class, event-sourced by
    # stream name), based on version 0.
    created = again.value
    stored_as = aggregate_class.__qualname__ if aggregate_class is Doc else type_name(Ledger)
    assert (created.aggregate, created.identifier) == (stored_as, "d-1")
    assert (created.expected_version, created.actual_version) == (0, 2)


# -- two handlers racing on one aggregate ----------------------------------------------------------


@pytest.mark.parametrize(
    ("aggregate_class", "create", "edit"),
    [
        pytest.param(Doc, CreateDoc, EditDoc, id="state-stored"),
        pytest.param(Note, CreateNote, EditNote, id="state-stored-without-version-field"),
        pytest.param(Ledger, CreateDoc, EditDoc, id="event-sourced"),
    ],
)
def test_of_two_concurrent_changes_exactly_one_wins(aggregate_class, create, edit):
    gate = Gate(parties=2)
    flow = bootstrap_flow_testing(classes=[aggregate_class], services=[gate])
    flow.send_command(create("d-1")).discard_recorded_messages()

    _, errors = race(flow, [edit("d-1", "left"), edit("d-1", "right")])

    assert len(errors) == 1
    assert isinstance(errors[0], ConcurrencyError)
    (published,) = flow.get_recorded_events()
    assert flow.get_aggregate(aggregate_class, "d-1").text == published.text
    assert published.text in ("left", "right")


def test_the_losing_event_sourced_change_leaves_only_the_winners_event_in_the_stream():
    gate = Gate(parties=2)
    flow = bootstrap_flow_testing(classes=[Ledger], services=[gate])
    flow.send_command(CreateDoc("d-1")).discard_recorded_messages()

    race(flow, [EditDoc("d-1", "left"), EditDoc("d-1", "right")])

    (published,) = flow.get_recorded_events()
    stored = flow.system.aggregates.event_store.load(type_name(Ledger), "d-1")
    assert [(e.version, e.payload) for e in stored] == [(1, DocCreated("d-1")), (2, published)]
    assert flow.get_aggregate(Ledger, "d-1").version == 2


def test_the_losing_state_stored_change_leaves_the_winners_state_and_version():
    gate = Gate(parties=2)
    flow = bootstrap_flow_testing(classes=[Doc], services=[gate])
    flow.send_command(CreateDoc("d-1")).discard_recorded_messages()

    results, _ = race(flow, [EditDoc("d-1", "left"), EditDoc("d-1", "right")])

    doc = flow.get_aggregate(Doc, "d-1")
    assert results == [doc.text]
    assert doc.version == 2
    assert flow.get_recorded_event_headers()[0]["aggregate.version"] == 2
