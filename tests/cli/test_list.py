"""``ecopy list``: the endpoints and consumers tables."""

from __future__ import annotations

import io

from rich.console import Console

from ecopy import EndpointInfo
from ecopy.cli.listing import endpoints_section
from tests.cli.invoking import SAMPLE_APP, Invoke


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

    assert cells(row_of(result.output, "get_order"))[-1] == "—"
    assert cells(row_of(result.output, "notify_customer"))[-1] == "audit"


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
