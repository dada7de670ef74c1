"""``ecopy list``: the endpoints and consumers tables."""

from __future__ import annotations

import io

from rich.console import Console

from ecopy import EndpointInfo
from ecopy.cli.listing import endpoints_section
from tests.cli.invoking import SAMPLE_APP, Invoke

OUTBOX_APP = "tests.cli.outbox_app:system"


def row_of(output: str, first_cell: str) -> str:
    """The table line whose first cell is ``first_cell``."""
    rows = [line for line in output.splitlines() if line.startswith(f"│ {first_cell} ")]
    assert len(rows) == 1, f"no single row for {first_cell!r} in:\n{output}"
    return rows[0]


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip("│").split("│")]


def test_lists_every_endpoint_with_kind_routes_handler_and_channels(invoke: Invoke) -> None:
    result = invoke("--app", SAMPLE_APP, "list")

    assert result.exit_code == 0, result.output
    assert "Endpoints (7)" in result.output
    expected = {
        "place_order": [
            "command",
            "tests.cli.sample_app.PlaceOrder",
            "tests.cli.sample_app.OrderService.place",
            "—",
            "shipping",
        ],
        "cancel_order": ["command", "order.cancel", "tests.cli.sample_app.OrderService.cancel"],
        "get_order": ["query", "order.get", "tests.cli.sample_app.OrderService.get"],
        "ship_order": [
            "internal",
            "shipping",
            "tests.cli.sample_app.OrderService.ship",
            "shipping",
        ],
        "notify_customer": ["event", "order.placed", "tests.cli.sample_app.Notifications.notify"],
        "order_statistics": ["event", "order.*", "tests.cli.sample_app.Notifications.count"],
        "audit_log": ["internal", "audit", "tests.cli.sample_app.Notifications.record", "audit"],
    }
    for endpoint_id, values in expected.items():
        row = cells(row_of(result.output, endpoint_id))
        assert row[1 : 1 + len(values)] == values


def test_an_endpoint_without_output_channel_shows_a_dash(invoke: Invoke) -> None:
    result = invoke("--app", SAMPLE_APP, "list")

    assert cells(row_of(result.output, "get_order"))[5] == "—"
    assert cells(row_of(result.output, "notify_customer"))[5] == "audit"


def test_the_handled_column_says_in_caller_or_the_channel_a_consumer_takes_it_from(
    invoke: Invoke,
) -> None:
    result = invoke("--app", SAMPLE_APP, "list")

    assert "┃ Handled " in result.output
    assert cells(row_of(result.output, "place_order"))[-1] == "in caller"
    assert cells(row_of(result.output, "get_order"))[-1] == "in caller"
    # An internal handler on a queue is run by the queue's consumer.
    assert cells(row_of(result.output, "ship_order"))[-1] == "via shipping"
    # A direct channel calls its handler in the sender.
    assert cells(row_of(result.output, "audit_log"))[-1] == "in caller"


def test_an_asynchronous_endpoint_shows_every_hop_of_its_channels(invoke: Invoke) -> None:
    result = invoke("--app", OUTBOX_APP, "list")

    assert result.exit_code == 0, result.output
    assert cells(row_of(result.output, "Account.register_again"))[-1] == "via db → rabbit"
    assert cells(row_of(result.output, "welcome"))[-1] == "via emails"
    assert cells(row_of(result.output, "count_openings"))[-1] == "in caller"
    assert cells(row_of(result.output, "mails_sent"))[-1] == "in caller"


def test_a_factory_is_listed_with_the_action_that_chooses_it(invoke: Invoke) -> None:
    result = invoke("--app", OUTBOX_APP, "list")

    assert "Endpoints (5)" in result.output
    lines = result.output.splitlines()
    factory = lines.index(row_of(result.output, "Account.open"))
    assert cells(lines[factory]) == [
        "Account.open",
        "command",
        "tests.cli.outbox_app.Register",
        "tests.cli.outbox_app.Account.open",
        "—",
        "—",
        "via db → rabbit",
    ]
    assert cells(lines[factory + 1]) == ["", "", "", "", "", "", "chosen by Account.register_again"]
    assert (
        "An endpoint chosen by another is never routed to by itself: the other endpoint's "
        "handler runs it instead (an aggregate's factory, when the aggregate does not exist "
        "yet)." in result.output
    )


def test_the_note_on_chosen_endpoints_appears_only_when_there_is_one(invoke: Invoke) -> None:
    result = invoke("--app", SAMPLE_APP, "list")

    assert "chosen by" not in result.output
    assert "never routed to by itself" not in result.output


def test_the_system_tells_the_channels_and_the_choice_of_each_endpoint() -> None:
    from tests.cli.outbox_app import create_system

    with create_system() as app:
        handling = {entry.endpoint_id: entry for entry in app.endpoint_channels()}

    assert list(handling) == [info.endpoint_id for info in app.endpoints()]
    assert handling["Account.open"].channels == ("db", "rabbit")
    assert handling["Account.open"].chosen_by == "Account.register_again"
    assert handling["Account.register_again"].chosen_by is None
    assert handling["welcome"].channels == ("emails",)
    assert handling["welcome"].asynchronous
    assert not handling["count_openings"].asynchronous


def test_lists_the_consumers_with_their_channel_and_endpoints(invoke: Invoke) -> None:
    result = invoke("--app", SAMPLE_APP, "list")

    assert "Consumers (1)" in result.output
    assert cells(row_of(result.output, "shipping")) == ["shipping", "shipping", "ship_order"]


def test_rows_are_not_wrapped_when_the_output_is_piped(invoke: Invoke) -> None:
    result = invoke("--app", SAMPLE_APP, "list", env={"COLUMNS": "40"})

    assert "tests.cli.sample_app.Notifications.record" in row_of(result.output, "audit_log")


def test_says_so_when_there_are_no_endpoints_and_no_consumers(invoke: Invoke) -> None:
    result = invoke("--app", "tests.cli.odd_apps:empty_system", "list")

    assert result.exit_code == 0, result.output
    assert "No endpoints: the application declares no handlers." in result.output
    assert "No consumers" in result.output
    assert "┃" not in result.output  # no empty tables


def test_names_that_look_like_markup_are_shown_as_they_are() -> None:
    info = EndpointInfo(
        endpoint_id="[bold]audit[/bold]",
        kind="event",
        handler="shop.Audit.on_any",
        routes=("order.[ab]*",),
    )
    output = io.StringIO()
    console = Console(file=output, width=200)

    for renderable in endpoints_section([info]):
        console.print(renderable)

    assert "[bold]audit[/bold]" in output.getvalue()
    assert "order.[ab]*" in output.getvalue()
