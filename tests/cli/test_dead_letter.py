"""``ecopy dead-letter list|show|replay|replay-all|delete`` against one running application.

Every command of a test loads the same system (``tests.cli.async_app:system``, replaced by a
fresh one for each test), so messages dead-lettered by ``ecopy run`` are there for the next
command.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from ecopy import DeadLetterEntry
from ecopy.messaging.dead_letter import new_entry
from tests.cli.payments_shop import PaymentsShop

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def fail_orders(shop: PaymentsShop, declined: Sequence[str], accepted: Sequence[str] = ()) -> str:
    """Place the orders, decline the cards of ``declined`` and run the consumer: one dead
    letter per declined order. Returns what the run logged."""
    shop.decline(*declined)
    shop.place_orders(*accepted, *declined)
    return shop.run_orders().stderr


def only_dead_letter_id(shop: PaymentsShop) -> str:
    (row,) = shop.dead_letters()
    return row["Id"]


def test_says_so_when_there_are_no_dead_letters(shop: PaymentsShop) -> None:
    result = shop.ecopy("dead-letter", "list")

    assert result.exit_code == 0, result.output
    assert result.stdout == "No dead letters.\n"


def test_lists_when_where_and_why_a_message_failed(shop: PaymentsShop) -> None:
    log = fail_orders(shop, declined=["o-2"], accepted=["o-1", "o-3"])

    result = shop.ecopy("dead-letter", "list")
    (row,) = shop.dead_letters()

    assert result.stdout.startswith("Dead letters (1)\n")
    assert UUID.fullmatch(row["Id"])
    failed_at = datetime.strptime(row["Failed at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - failed_at) < timedelta(minutes=1)
    assert row["Channel"] == "orders"
    assert row["Endpoint"] == "charge_card"
    assert f"message {row['Message id']} failed for good" in log
    assert row["Exception"] == "CardDeclined"
    assert row["Message"] == "card declined for order o-2 (30 EUR)"


def test_a_long_exception_message_is_cut_in_the_list_and_whole_in_show(
    shop: PaymentsShop,
) -> None:
    order_id = "o-" + "7" * 80
    fail_orders(shop, declined=[order_id])

    (row,) = shop.dead_letters()
    shown = shop.ecopy("dead-letter", "show", row["Id"])

    assert len(row["Message"]) == 60
    assert row["Message"] == f"card declined for order {order_id}"[:59] + "…"
    assert f"card declined for order {order_id} (30 EUR)" in shown.stdout


def test_text_that_looks_like_markup_is_shown_as_it_is(shop: PaymentsShop) -> None:
    fail_orders(shop, declined=["[bold]o-1[/bold]"])

    (row,) = shop.dead_letters()

    assert row["Message"] == "card declined for order [bold]o-1[/bold] (30 EUR)"


def test_show_prints_the_message_the_exception_and_the_traceback(shop: PaymentsShop) -> None:
    fail_orders(shop, declined=["o-2"])
    (row,) = shop.dead_letters()

    result = shop.ecopy("dead-letter", "show", row["Id"])

    assert result.exit_code == 0, result.output
    payload, headers, traceback = _sections(result.stdout, "Payload", "Headers", "Traceback")
    heading, failed_at, *fields = result.stdout.splitlines()[:7]
    assert heading == f"Dead letter {row['Id']}"
    assert re.fullmatch(rf"Failed at   {re.escape(row['Failed at'][:-1])}\.\d{{3}}Z", failed_at)
    assert fields == [
        "Channel     orders",
        "Endpoint    charge_card",
        f"Message id  {row['Message id']}",
        "Type        order.placed",
        "Exception   CardDeclined: card declined for order o-2 (30 EUR)",
    ]
    assert payload == '{\n  "order_id": "o-2",\n  "amount": 30\n}'
    assert f'"id": "{row["Message id"]}"' in headers
    assert '"ecopy.endpoint_id": "charge_card"' in headers
    assert "ecopy.exception" not in headers  # shown above and below, not twice
    assert traceback.startswith("Traceback (most recent call last):")
    assert 'raise CardDeclined(f"card declined for order' in traceback
    assert "tests.cli.async_app.CardDeclined: card declined for order o-2 (30 EUR)" in traceback


def test_replay_runs_again_only_the_handler_that_failed(shop: PaymentsShop) -> None:
    fail_orders(shop, declined=["o-2"], accepted=["o-1"])
    entry_id = only_dead_letter_id(shop)
    shop.accept_all_cards()

    replayed = shop.ecopy("dead-letter", "replay", entry_id)
    left = shop.ecopy("dead-letter", "list")
    run = shop.run_orders()

    assert replayed.exit_code == 0, replayed.output
    assert replayed.stdout == (
        f"Replayed dead letter {entry_id} to channel orders for endpoint charge_card.\n"
        "Run `ecopy run orders` to handle it.\n"
    )
    assert left.stdout == "No dead letters.\n"
    assert run.stdout == "Consumer orders stopped after handling 1 message.\n"
    assert shop.payments.charged == ["o-1", "o-2"]
    assert shop.notifications.notified == ["o-1", "o-2"]  # o-2 was not notified twice


def test_a_replayed_message_that_fails_again_is_dead_lettered_again(shop: PaymentsShop) -> None:
    fail_orders(shop, declined=["o-2"])
    (before,) = shop.dead_letters()

    shop.ecopy("dead-letter", "replay", before["Id"])
    shop.run_orders()
    (after,) = shop.dead_letters()

    assert shop.payments.charge_attempts == ["o-2", "o-2"]
    assert after["Id"] != before["Id"]
    assert after["Message id"] == before["Message id"]
    assert after["Endpoint"] == "charge_card"


def test_replay_all_sends_every_dead_letter_back_to_its_handler(shop: PaymentsShop) -> None:
    fail_orders(shop, declined=["o-1", "o-3"], accepted=["o-2"])
    shop.accept_all_cards()

    replayed = shop.ecopy("dead-letter", "replay-all")
    run = shop.run_orders()

    assert replayed.exit_code == 0, replayed.output
    assert replayed.stdout.startswith("Replayed 2 dead letters.")
    assert "after handling 2 messages" in run.stdout
    assert sorted(shop.payments.charged) == ["o-1", "o-2", "o-3"]
    assert sorted(shop.notifications.notified) == ["o-1", "o-2", "o-3"]
    assert shop.ecopy("dead-letter", "list").stdout == "No dead letters.\n"


def test_replay_all_replays_what_it_can_and_fails_naming_what_it_cannot(
    shop: PaymentsShop,
) -> None:
    fail_orders(shop, declined=["o-1", "o-2"])
    store = shop.system.dead_letter.store
    unreadable = new_entry(
        channel="orders",
        endpoint_id=None,
        message_id=None,
        body="{broken",
        error="malformed JSON",
        traceback="",
        failed_at=0.0,
    )
    (readable,) = [entry for entry in store.list() if entry.message_id][:1]
    elsewhere = dataclasses.replace(readable, id="moved-away", channel="retired")
    store.add(unreadable)
    store.add(elsewhere)
    shop.accept_all_cards()

    result = shop.ecopy("dead-letter", "replay-all")

    assert result.exit_code == 1
    assert result.stdout.startswith("Replayed 2 dead letters.")
    assert f"Not replayed: {unreadable.id}: dead letter {unreadable.id} cannot be replayed" in (
        result.stderr
    )
    assert (
        "Not replayed: moved-away: dead letter moved-away cannot be replayed: it failed on "
        "channel 'retired', which this application does not have; declare that channel again "
        "to replay it, or delete it with `ecopy dead-letter delete moved-away`"
    ) in result.stderr
    assert "Error: 2 dead letters of 4 could not be replayed and stay in the dead letters" in (
        result.stderr
    )
    assert {row["Id"] for row in shop.dead_letters()} == {unreadable.id, "moved-away"}
    assert "after handling 2 messages" in shop.run_orders().stdout


def test_replay_all_without_dead_letters_says_so(shop: PaymentsShop) -> None:
    result = shop.ecopy("dead-letter", "replay-all")

    assert result.exit_code == 0, result.output
    assert result.stdout == "No dead letters to replay.\n"


def test_delete_removes_one_dead_letter(shop: PaymentsShop) -> None:
    fail_orders(shop, declined=["o-1", "o-2"])
    first, second = shop.dead_letters()

    result = shop.ecopy("dead-letter", "delete", first["Id"])

    assert result.exit_code == 0, result.output
    assert result.stdout == f"Deleted dead letter {first['Id']}.\n"
    assert shop.dead_letters() == [second]


def test_delete_all_asks_before_deleting(shop: PaymentsShop) -> None:
    fail_orders(shop, declined=["o-1", "o-2"])

    refused = shop.ecopy("dead-letter", "delete", "--all", input="n\n")
    still_there = shop.dead_letters()
    accepted = shop.ecopy("dead-letter", "delete", "--all", input="y\n")

    assert refused.exit_code == 1
    assert "Delete all 2 dead letters? A deleted one cannot be replayed." in refused.stdout
    assert "Aborted!" in refused.stderr
    assert len(still_there) == 2
    assert accepted.exit_code == 0, accepted.output
    assert accepted.stdout.endswith("Deleted 2 dead letters.\n")
    assert shop.ecopy("dead-letter", "list").stdout == "No dead letters.\n"


def test_delete_all_with_yes_does_not_ask(shop: PaymentsShop) -> None:
    fail_orders(shop, declined=["o-1"])

    result = shop.ecopy("dead-letter", "delete", "--all", "--yes")

    assert result.exit_code == 0, result.output
    assert result.stdout == "Deleted 1 dead letter.\n"


def test_delete_all_without_dead_letters_says_so(shop: PaymentsShop) -> None:
    result = shop.ecopy("dead-letter", "delete", "--all")

    assert result.stdout == "No dead letters to delete.\n"


@pytest.mark.parametrize(
    ("arguments", "explanation"),
    [
        ((), "Give the ID of the dead letter to delete, or --all."),
        (("some-id", "--all"), "Give a dead letter ID or --all, not both."),
    ],
)
def test_delete_needs_an_id_or_all(
    shop: PaymentsShop, arguments: tuple[str, ...], explanation: str
) -> None:
    result = shop.ecopy("dead-letter", "delete", *arguments)

    assert result.exit_code == 2
    assert explanation in result.stderr


@pytest.mark.parametrize("command", ["show", "replay", "delete"])
def test_an_unknown_id_is_a_clean_error(shop: PaymentsShop, command: str) -> None:
    fail_orders(shop, declined=["o-1"])

    result = shop.ecopy("dead-letter", command, "no-such-id")
    (known,) = shop.dead_letters()

    assert result.exit_code == 2  # a usage error, naming the ids there are
    assert "Error: No dead letter 'no-such-id'" in result.stderr
    assert result.stderr.endswith(f"Known dead letters: {known['Id']}.\n")
    assert "Traceback" not in result.output
    assert len(shop.dead_letters()) == 1


def test_pages_through_many_dead_letters(shop: PaymentsShop) -> None:
    fail_orders(shop, declined=["o-1", "o-2", "o-3"])
    everything = shop.dead_letters()

    first = shop.ecopy("dead-letter", "list", "--limit", "2")
    second = shop.ecopy("dead-letter", "list", "--limit", "2", "--offset", "2")
    beyond = shop.ecopy("dead-letter", "list", "--offset", "5")

    assert first.stdout.startswith("Dead letters 1 to 2 of 3\n")
    assert first.stdout.endswith("Next page: ecopy dead-letter list --limit 2 --offset 2\n")
    assert second.stdout.startswith("Dead letters 3 to 3 of 3\n")
    assert "Next page" not in second.stdout
    assert shop.dead_letters("--limit", "2") + shop.dead_letters("--offset", "2") == everything
    assert beyond.stdout == "No dead letters at offset 5: there are 3.\n"


def test_a_body_that_is_not_a_message_is_shown_as_stored_and_not_replayed(
    shop: PaymentsShop,
) -> None:
    # What a broker delivers when a producer wrote something that is not an ecopy message.
    shop.system.dead_letter.store.add(
        DeadLetterEntry(
            id="unreadable-1",
            channel="orders",
            endpoint_id=None,
            message_id=None,
            body="<order>o-1</order>",
            exception_type="Error",
            exception_message="malformed JSON in message",
            traceback="",
            failed_at=0.0,
        )
    )

    (row,) = shop.dead_letters()
    shown = shop.ecopy("dead-letter", "show", "unreadable-1")
    replayed = shop.ecopy("dead-letter", "replay", "unreadable-1")

    assert row["Endpoint"] == row["Message id"] == "—"
    assert row["Failed at"] == "1970-01-01T00:00:00Z"
    assert "Type        — (the stored body is not a readable message)" in shown.stdout
    assert _sections(shown.stdout, "Payload", "Headers", "Traceback") == [
        "<order>o-1</order>",
        "(none)",
        "(none recorded)",
    ]
    assert replayed.exit_code == 1
    assert "dead letter unreadable-1 cannot be replayed" in replayed.stderr
    assert len(shop.dead_letters()) == 1


def test_the_help_explains_how_to_delete_them_all(shop: PaymentsShop) -> None:
    result = shop.ecopy("dead-letter", "--help")

    assert result.exit_code == 0
    assert "`delete --all`" in " ".join(result.stdout.split())  # however the help wraps
    for command in ("list", "show", "replay", "replay-all", "delete"):
        assert re.search(rf"^  {command} ", result.stdout, re.MULTILINE), command


def _sections(output: str, *titles: str) -> list[str]:
    """The text under each of ``titles`` (a line of its own), up to the next blank line
    followed by a title, or the end."""
    pattern = "|".join(re.escape(title) for title in titles)
    parts = re.split(rf"\n\n(?:{pattern})\n", output.rstrip("\n"))
    assert len(parts) == len(titles) + 1, output
    return parts[1:]
