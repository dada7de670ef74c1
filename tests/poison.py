"""Poison messages: bytes on a channel that can never be handled, as a broken or hostile
producer (or a hand-written ``INSERT``) could leave them. Each case is a body and the words its
dead letter must give as the reason; the consumer must keep running, store the body as it was,
and go on with the next message.

Shared by the in-memory and database consumer tests and by the fault suite's fuzzer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from ecopy import Message, MessagingSystem, asynchronous, command_handler, named_event

CHANNEL = "jobs"
ENDPOINT = "do_job"
JOB_TYPE = "poison.job"


@named_event(JOB_TYPE)
@dataclass(frozen=True)
class Job:
    number: int


class Jobs:
    """Handles jobs: records each job number with the id of the message that carried it."""

    def __init__(self) -> None:
        self.done: list[tuple[int, str]] = []

    @asynchronous(CHANNEL)
    @command_handler(endpoint_id=ENDPOINT)
    def do(self, job: Job, message: Message) -> None:
        self.done.append((job.number, message.id))


def assert_settled_as_dead_letter(app: MessagingSystem, jobs: Jobs, body: str, reason: str) -> None:
    """``body`` on the queue, then a good job: the consumer handles both without stopping, the
    body becomes a dead letter giving ``reason``, the job is done."""
    app.channel(CHANNEL).send_serialized(body)  # type: ignore[attr-defined]
    app.channel(CHANNEL).send_serialized(text(envelope(2)))  # type: ignore[attr-defined]

    assert app.run(CHANNEL, finish_when_no_messages=True) == 2

    assert [number for number, _ in jobs.done] == [2]
    [dead] = app.dead_letter.list()
    assert reason in dead.exception_message
    assert dead.channel == CHANNEL
    if dead.message_id is None:  # never read as a message: kept exactly as it came
        assert dead.body == body


def envelope(number: int = 1, **headers: Any) -> dict[str, Any]:
    """A well-formed envelope of a job for ``do_job``; ``headers`` change or add headers."""
    base: dict[str, Any] = {
        "id": f"00000000-0000-4000-8000-{number:012d}",
        "correlation_id": f"00000000-0000-4000-8000-{number:012d}",
        "timestamp": 1_700_000_000.0,
        "ecopy.endpoint_id": ENDPOINT,
        "ecopy.channel": CHANNEL,
    }
    base.update(headers)
    return {"type": JOB_TYPE, "payload": {"number": number}, "headers": base}


def text(value: Any) -> str:
    return json.dumps(value)


def nested(depth: int) -> str:
    return '{"type": "json", "payload": ' + "[" * depth + "]" * depth + ', "headers": {}}'


def _case(body: str, reason: str, name: str) -> Any:
    return pytest.param(body, reason, id=name)


def _headers(reason: str, name: str, **headers: Any) -> Any:
    return _case(text(envelope(**headers)), reason, name)


ENDPOINT_ID = "ecopy.endpoint_id"


CASES = [
    _case("{not json", "malformed JSON", "malformed-json"),
    _case("", "malformed JSON", "empty"),
    _case(text([1, 2]), "not an ecopy message envelope", "not-an-object"),
    _case(
        text({"type": JOB_TYPE, "payload": {}, "headers": [1]}),
        "not an ecopy message",
        "headers-list",
    ),
    _headers("ecopy.endpoint_id", "endpoint-list", **{ENDPOINT_ID: ["do_job"]}),
    _headers("ecopy.endpoint_id", "endpoint-dict", **{ENDPOINT_ID: {"a": 1}}),
    _headers("ecopy.endpoint_id", "endpoint-int", **{ENDPOINT_ID: 7}),
    _headers("300 characters long", "endpoint-long", **{ENDPOINT_ID: "e" * 300}),
    _headers("NUL", "endpoint-nul", **{ENDPOINT_ID: "do\u0000job"}),
    _headers("'nobody'", "endpoint-unknown", **{ENDPOINT_ID: "nobody"}),
    _headers("the id is 300 characters long", "id-long", id="i" * 300),
    _headers("the id contains a NUL", "id-nul", id="a\u0000b"),
    _headers("the id must be a non-empty string", "id-int", id=12),
    _headers("ecopy.retry_count", "retry-text", **{"ecopy.retry_count": "two"}),
    _headers("ecopy.retry_count", "retry-negative", **{"ecopy.retry_count": -2198}),
    _headers("ecopy.retry_count", "retry-float", **{"ecopy.retry_count": 1.5}),
    _headers("ecopy.priority", "priority-text", **{"ecopy.priority": "high"}),
    _headers("ecopy.priority", "priority-huge", **{"ecopy.priority": 10**30}),
    _headers("ecopy.deliver_at", "deliver-text", **{"ecopy.deliver_at": "tomorrow"}),
    _headers("ecopy.expires_at", "expires-list", **{"ecopy.expires_at": [1]}),
    _headers("'timestamp'", "timestamp-text", timestamp="noon"),
    _case(nested(2000), "malformed JSON", "nested-2000"),
    _case(text({**envelope(), "type": "nobody.knows"}), "unknown message type", "unknown-type"),
    _case(text({**envelope(), "payload": {"number": "x"}}), "does not fit", "payload-misfit"),
]
