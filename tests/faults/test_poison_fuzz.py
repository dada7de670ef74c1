"""The poison-row fuzzer: hypothesis writes rows into a database queue — any text, any JSON,
well-formed envelopes with headers of any shape and value — between well-formed jobs. Whatever
the rows hold, the consumer keeps running, every row is settled exactly once (handled, or a
dead letter with its raw body), and every well-formed job is handled exactly once."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ecopy
from ecopy import ServiceConfiguration
from ecopy_dbal import Database, DbalChannel, DbalConfiguration
from ecopy_dbal.channel import messages
from ecopy_dbal.dead_letter import dead_letters
from tests.faults.workload import report, scale
from tests.poison import CHANNEL, JOB_TYPE, Jobs, envelope, nested

HEADERS = (
    "id",
    "correlation_id",
    "parent_id",
    "timestamp",
    "ecopy.endpoint_id",
    "ecopy.channel",
    "ecopy.retry_count",
    "ecopy.priority",
    "ecopy.deliver_at",
    "ecopy.expires_at",
)
SPECIAL = (
    "",
    "x" * 300,
    "do_job",
    "a\x00b",
    -1,
    -(10**12),
    10**40,
    1e308,
    True,
    [],
    {},
    None,
)

characters = st.characters(blacklist_categories=("Cs",))  # no lone surrogates: not text
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(characters, max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(characters, max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def poison_body(draw: st.DrawFn, number: int) -> str:
    kind = draw(st.sampled_from(["text", "json", "envelope", "envelope", "envelope", "deep"]))
    if kind == "text":
        return draw(st.text(characters, max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values))
    if kind == "deep":
        return nested(draw(st.integers(min_value=150, max_value=3000)))
    body: dict[str, Any] = envelope(number)
    for header in draw(st.sets(st.sampled_from(HEADERS), min_size=1, max_size=4)):
        body["headers"][header] = draw(st.sampled_from(SPECIAL) | json_values)
    if draw(st.booleans()):
        body["type"] = draw(st.sampled_from([JOB_TYPE, "json", "other.type"]) | json_values)
    if draw(st.booleans()):
        body["payload"] = draw(json_values)
    return json.dumps(body)


@st.composite
def rows(draw: st.DrawFn) -> list[str]:
    count = draw(st.integers(min_value=1, max_value=6))
    return [draw(poison_body(1000 + index)) for index in range(count)]


@pytest.fixture
def queue_app(database_url):
    jobs = Jobs()
    app = ecopy.bootstrap(
        classes=[Jobs],
        services=[jobs],
        config=ServiceConfiguration(
            extensions=[DbalConfiguration(url=database_url, auto_setup=True), DbalChannel(CHANNEL)]
        ),
    )
    yield app, jobs
    app.service(Database).dispose()


def test_whatever_rows_a_queue_holds_the_consumer_settles_each_exactly_once(
    queue_app, database_url
):
    app, jobs = queue_app
    database = app.service(Database)
    postgres = database.dialect == "postgresql"
    totals = {"rows": 0, "handled": 0, "dead_letters": 0}

    @settings(
        max_examples=60 * scale(),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(rows())
    def settles_every_row(bodies: list[str]) -> None:
        if postgres:  # PostgreSQL's text columns cannot hold NUL: such rows cannot exist there
            bodies = [body.replace("\x00", "") for body in bodies]
        good = [json.dumps(envelope(number)) for number in (1, 2)]
        queue = app.channel(CHANNEL)
        for body in [good[0], *bodies, good[1]]:
            queue.send_serialized(body)
        jobs.done.clear()

        handled = app.run(CHANNEL, finish_when_no_messages=True)  # must not raise

        with database.engine.begin() as connection:
            left = connection.execute(sa.select(sa.func.count()).select_from(messages))
            assert left.scalar_one() == 0
            dead = connection.execute(
                sa.select(dead_letters.c.message_id, dead_letters.c.body)
            ).all()
            connection.execute(dead_letters.delete())
        assert handled == len(bodies) + 2
        assert len(jobs.done) + len(dead) == len(bodies) + 2, "a row settled twice or never"
        handled_ids = [message_id for _, message_id in jobs.done]
        for number in (1, 2):
            assert handled_ids.count(envelope(number)["headers"]["id"]) == 1
        for message_id, body in dead:
            if message_id is None:  # never read as a message: kept as it came
                assert body in bodies or body.replace("\\u0000", "\x00") in bodies
        totals["rows"] += len(bodies) + 2
        totals["handled"] += len(jobs.done)
        totals["dead_letters"] += len(dead)

    settles_every_row()
    report("poison-row-fuzzer", database_url, **totals, lost=0, settled_twice=0, crashes=0)
