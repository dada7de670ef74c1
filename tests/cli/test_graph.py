"""``ecopy graph``: the routing graph as a text tree and as a Mermaid flowchart."""

from __future__ import annotations

import re

from ecopy import EndpointInfo
from ecopy.cli.graph import build_routing_graph, render_mermaid, render_text
from ecopy.config.system import ConsumerInfo, EndpointChannels
from tests.cli.invoking import SAMPLE_APP, Invoke

ASYNC_APP = "tests.cli.async_app:system"
OUTBOX_APP = "tests.cli.outbox_app:system"

SAMPLE_EDGES = {
    ("command bus", "tests.cli.sample_app.PlaceOrder"),
    ("tests.cli.sample_app.PlaceOrder", "place_order"),
    ("place_order", "shipping"),
    ("shipping", "consumer shipping"),
    ("consumer shipping", "ship_order"),
    ("command bus", "order.cancel"),
    ("order.cancel", "cancel_order"),
    ("query bus", "order.get"),
    ("order.get", "get_order"),
    ("event bus", "order.placed"),
    ("order.placed", "notify_customer"),
    ("notify_customer", "audit"),
    ("audit", "audit_log"),
    ("event bus", "order.*"),
    ("order.*", "order_statistics"),
}

_TREE_LINE = re.compile(r"^(?P<indent>(?:│   |    )*)(?:├── |└── )?(?P<text>.*)$")


def _name(text: str) -> str:
    """``endpoint place_order (handler)`` → ``place_order``; ``order.* (pattern)`` → ``order.*``."""
    text = re.sub(r" \(.*\)$", "", text)
    return re.sub(r"^(endpoint|channel) ", "", text)


def text_edges(output: str) -> set[tuple[str, str]]:
    """The parent → child pairs of the indented trees, by node name."""
    edges: set[tuple[str, str]] = set()
    parents: list[str] = []
    for line in output.splitlines():
        if not line.strip() or line.endswith("(no handlers)"):
            continue
        match = _TREE_LINE.match(line)
        assert match is not None
        depth = len(match["indent"]) // 4 + (0 if line == match["text"] else 1)
        name = _name(match["text"])
        del parents[depth:]
        if parents:
            edges.add((parents[-1], name))
        parents.append(name)
    return edges


def mermaid_parts(output: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """Node id → first label line, and edges by label, from a Mermaid flowchart."""
    labels: dict[str, str] = {}
    edges: set[tuple[str, str]] = set()
    for line in output.splitlines()[1:]:
        edge = re.fullmatch(r" {4}(\w+) --> (\w+)", line)
        if edge:
            edges.add((edge[1], edge[2]))
            continue
        node = re.fullmatch(r' {4}(\w+)[\[\(]{1,2}"([^"]*)"[\]\)]{1,2}', line)
        assert node is not None, f"not a node or an edge: {line!r}"
        assert node[1] not in labels, f"duplicate node id {node[1]}"
        labels[node[1]] = node[2].split("<br/>")[0]
    return labels, {(labels[a], labels[b]) for a, b in edges}


def test_text_graph_shows_bus_route_endpoint_and_channel_edges(invoke: Invoke) -> None:
    result = invoke("--app", SAMPLE_APP, "graph")

    assert result.exit_code == 0, result.output
    assert text_edges(result.output) == SAMPLE_EDGES


def test_text_graph_is_an_indented_tree_per_bus(invoke: Invoke) -> None:
    result = invoke("--app", SAMPLE_APP, "graph", "--format", "text")

    assert (
        "query bus\n"
        "└── order.get\n"
        "    └── endpoint get_order (tests.cli.sample_app.OrderService.get)\n"
    ) in result.output
    assert (
        "│   └── endpoint place_order (tests.cli.sample_app.OrderService.place)\n"
        "│       └── channel shipping\n"
        "│           └── consumer shipping\n"
        "│               └── endpoint ship_order (tests.cli.sample_app.OrderService.ship)\n"
    ) in result.output
    assert "└── order.* (pattern)\n" in result.output


def test_mermaid_graph_is_a_flowchart_with_an_edge_for_each_route(invoke: Invoke) -> None:
    result = invoke("--app", SAMPLE_APP, "graph", "--format", "mermaid")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("flowchart LR\n")
    labels, edges = mermaid_parts(result.output)
    assert edges == SAMPLE_EDGES
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", node_id) for node_id in labels)


def test_text_and_mermaid_show_the_same_graph(invoke: Invoke) -> None:
    text = invoke("--app", "tests.cli.sample_app:create_system", "graph").output
    mermaid = invoke("--app", "tests.cli.sample_app:create_system", "graph", "--format", "mermaid")

    assert mermaid_parts(mermaid.output)[1] == text_edges(text)


def test_an_unknown_format_is_a_usage_error(invoke: Invoke) -> None:
    result = invoke("--app", SAMPLE_APP, "graph", "--format", "dot")

    assert result.exit_code == 2
    assert "'dot' is not one of 'text', 'mermaid'" in result.output


def test_an_application_without_handlers_shows_empty_buses(invoke: Invoke) -> None:
    result = invoke("--app", "tests.cli.odd_apps:empty_system", "graph")

    assert result.exit_code == 0, result.output
    assert result.output.count("└── (no handlers)") == 3


def endpoint(endpoint_id: str, kind: str, *routes: str, **options: str) -> EndpointInfo:
    return EndpointInfo(
        endpoint_id=endpoint_id,
        kind=kind,
        handler=f"shop.{endpoint_id}",
        routes=routes,
        input_channel=options.get("input_channel", endpoint_id),
        output_channel=options.get("output_channel"),
    )


def test_names_that_differ_only_in_punctuation_get_distinct_mermaid_ids() -> None:
    graph = build_routing_graph(
        [endpoint("a", "event", "order.*"), endpoint("b", "event", "order_*")]
    )

    labels, edges = mermaid_parts(render_mermaid(graph))

    assert {("order.*", "a"), ("order_*", "b")} <= edges
    assert len(labels) == len(graph.nodes)


def test_mermaid_labels_are_escaped() -> None:
    graph = build_routing_graph([endpoint('say "hi" <now> #1', "command", "greet")])

    output = render_mermaid(graph)

    assert '("say #quot;hi#quot; #lt;now#gt; #35;1<br/>shop.say #quot;hi#quot;' in output
    labels, _ = mermaid_parts(output)
    assert "say #quot;hi#quot; #lt;now#gt; #35;1" in labels.values()


def test_an_endpoint_fed_by_a_consumer_queue_is_reached_through_that_channel() -> None:
    graph = build_routing_graph(
        [endpoint("notify", "event", "order.placed", input_channel="notifications")],
        [ConsumerInfo(name="notifications", channel="notifications", endpoints=("notify",))],
    )

    assert text_edges(render_text(graph)) == {
        ("event bus", "order.placed"),
        ("order.placed", "notifications"),
        ("notifications", "consumer notifications"),
        ("consumer notifications", "notify"),
    }


def test_channels_no_bus_leads_to_are_shown_after_the_buses() -> None:
    graph = build_routing_graph([endpoint("archive", "internal", "archive", input_channel="old")])

    output = render_text(graph)

    assert output.endswith("\n\nchannel old\n└── endpoint archive (shop.archive)")


def test_a_cycle_between_internal_endpoints_is_shown_once() -> None:
    graph = build_routing_graph(
        [
            endpoint("start", "command", "go", output_channel="ping"),
            endpoint("pinger", "internal", "ping", input_channel="ping", output_channel="pong"),
            endpoint("ponger", "internal", "pong", input_channel="pong", output_channel="ping"),
        ]
    )

    output = render_text(graph)

    assert "channel ping (cycle: already shown above)" in output
    assert output.count("endpoint ponger") == 1


def test_an_asynchronous_endpoint_is_reached_through_its_channel_and_consumer(
    invoke: Invoke,
) -> None:
    result = invoke("--app", ASYNC_APP, "graph")

    assert result.exit_code == 0, result.output
    assert result.output.endswith(
        "event bus\n"
        "└── order.placed\n"
        "    └── channel orders\n"
        "        └── consumer orders\n"
        "            ├── endpoint charge_card (tests.cli.async_app.Payments.charge)\n"
        "            └── endpoint notify_customer (tests.cli.async_app.Notifications.notify)\n"
    )


def test_a_combined_channel_shows_each_hop_and_synchronous_handlers_stay_direct(
    invoke: Invoke,
) -> None:
    result = invoke("--app", OUTBOX_APP, "graph")

    assert result.output == (
        "command bus\n"
        "└── tests.cli.outbox_app.Register\n"
        "    └── channel db\n"
        "        └── consumer db\n"
        "            └── channel rabbit\n"
        "                └── consumer rabbit\n"
        "                    ├── endpoint Account.open (tests.cli.outbox_app.Account.open; "
        "chosen by Account.register_again)\n"
        "                    └── endpoint Account.register_again "
        "(tests.cli.outbox_app.Account.register_again)\n"
        "\n"
        "query bus\n"
        "└── account.mails\n"
        "    └── endpoint mails_sent (tests.cli.outbox_app.Mailer.mails)\n"
        "\n"
        "event bus\n"
        "└── account.opened\n"
        "    ├── channel emails\n"
        "    │   └── consumer emails\n"
        "    │       └── endpoint welcome (tests.cli.outbox_app.Mailer.welcome)\n"
        "    └── endpoint count_openings (tests.cli.outbox_app.Mailer.count)\n"
    )


def test_mermaid_draws_the_asynchronous_hops_with_consumers_as_subroutines(
    invoke: Invoke,
) -> None:
    text = invoke("--app", OUTBOX_APP, "graph").output
    result = invoke("--app", OUTBOX_APP, "graph", "--format", "mermaid")

    lines = result.output.splitlines()
    assert '    hop_route_event_account_opened_emails[("emails")]' in lines
    assert '    consumer_route_event_account_opened_emails[["consumer emails"]]' in lines
    assert (
        "    hop_route_event_account_opened_emails --> consumer_route_event_account_opened_emails"
        in lines
    )
    _, edges = mermaid_parts(result.output)
    assert {
        ("tests.cli.outbox_app.Register", "db"),
        ("db", "consumer db"),
        ("consumer db", "rabbit"),
        ("rabbit", "consumer rabbit"),
        ("consumer rabbit", "Account.register_again"),
        ("account.opened", "count_openings"),
    } <= edges
    assert edges == text_edges(text)


def test_routes_sharing_a_channel_keep_their_own_endpoints() -> None:
    graph = build_routing_graph(
        [
            endpoint("charge", "event", "order.placed", input_channel=""),
            endpoint("refund", "event", "order.cancelled", input_channel=""),
        ],
        [ConsumerInfo(name="orders", channel="orders", endpoints=("charge", "refund"))],
        [EndpointChannels("charge", ("orders",)), EndpointChannels("refund", ("orders",))],
    )

    output = render_text(graph)

    assert (
        "├── order.placed\n"
        "│   └── channel orders\n"
        "│       └── consumer orders\n"
        "│           └── endpoint charge (shop.charge)\n"
        "└── order.cancelled\n"
        "    └── channel orders\n"
        "        └── consumer orders\n"
        "            └── endpoint refund (shop.refund)"
    ) in output


def test_without_channel_information_endpoints_hang_directly_under_their_routes() -> None:
    graph = build_routing_graph(
        [endpoint("charge", "event", "order.placed", input_channel="")],
        [ConsumerInfo(name="orders", channel="orders", endpoints=("charge",))],
    )

    assert text_edges(render_text(graph)) == {
        ("event bus", "order.placed"),
        ("order.placed", "charge"),
    }
