"""The routing graph behind ``ecopy graph``: built once as nodes and edges, rendered as an
indented text tree or a Mermaid flowchart.

Both renderings read the same :class:`RoutingGraph`, so they never disagree. Edges run
bus → route → endpoint, endpoint → output channel → the endpoint listening on that channel.
A message that waits in a channel for a consumer shows that hop: an asynchronous endpoint is
reached route → channel → consumer → endpoint, through every channel of a
``CombinedMessageChannel`` in turn, and an internal endpoint on a queue through its channel
and that channel's consumer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ecopy.config.system import ConsumerInfo, EndpointChannels, MessagingSystem
from ecopy.messaging.endpoint import EndpointInfo
from ecopy.modelling.routing import is_pattern

NodeKind = Literal["bus", "route", "endpoint", "channel", "consumer"]

# Endpoint kind → (bus node key, bus label), in the order the buses are shown.
BUSES: dict[str, tuple[str, str]] = {
    "command": ("bus:command", "command bus"),
    "query": ("bus:query", "query bus"),
    "event": ("bus:event", "event bus"),
}


@dataclass(frozen=True)
class GraphNode:
    """A bus, route, endpoint, channel or consumer; ``key`` is unique within its graph."""

    key: str
    kind: NodeKind
    label: str
    detail: str = ""


@dataclass(frozen=True)
class GraphEdge:
    source: str
    target: str


@dataclass(frozen=True)
class RoutingGraph:
    """Nodes and edges in a stable order (buses first, then in endpoint registration order)."""

    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    _by_key: dict[str, GraphNode] = field(init=False, repr=False, compare=False)
    _successors: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        successors: dict[str, list[str]] = {node.key: [] for node in self.nodes}
        for edge in self.edges:
            successors[edge.source].append(edge.target)
        object.__setattr__(self, "_by_key", {node.key: node for node in self.nodes})
        object.__setattr__(self, "_successors", successors)

    def node(self, key: str) -> GraphNode:
        return self._by_key[key]

    def successors(self, key: str) -> list[GraphNode]:
        return [self._by_key[target] for target in self._successors[key]]

    def roots(self) -> list[GraphNode]:
        """The buses, then every other node that nothing leads to (e.g. an unused channel)."""
        reached = {edge.target for edge in self.edges}
        buses = [node for node in self.nodes if node.kind == "bus"]
        others = [node for node in self.nodes if node.kind != "bus" and node.key not in reached]
        return buses + others


def routing_graph(system: MessagingSystem) -> RoutingGraph:
    """The routing graph of a bootstrapped application."""
    return build_routing_graph(
        system.endpoints(), system.list_consumers(), system.endpoint_channels()
    )


def build_routing_graph(
    endpoints: Iterable[EndpointInfo],
    consumers: Iterable[ConsumerInfo] = (),
    channels: Iterable[EndpointChannels] = (),
) -> RoutingGraph:
    """Build the graph from endpoint and consumer descriptions, and the channels each
    asynchronous endpoint's messages go through (``app.endpoint_channels()``)."""
    consumer_of = {consumer.channel: consumer.name for consumer in consumers}
    hops_of: dict[str, tuple[str, ...]] = {}
    chosen_by: dict[str, str] = {}
    for handling in channels:
        hops_of[handling.endpoint_id] = handling.channels
        if handling.chosen_by is not None:
            chosen_by[handling.endpoint_id] = handling.chosen_by
    nodes: dict[str, GraphNode] = {}
    edges: dict[GraphEdge, None] = {}

    def add(node: GraphNode) -> str:
        nodes.setdefault(node.key, node)
        return node.key

    def link(source: str, target: str) -> None:
        edges.setdefault(GraphEdge(source, target), None)

    def consumed(channel_key: str, name: str, scope: str) -> str:
        """The consumer after a channel (the channel itself when it has none)."""
        consumer = consumer_of.get(name)
        if consumer is None:
            return channel_key
        consumer_key = add(GraphNode(f"consumer:{scope}", "consumer", consumer))
        link(channel_key, consumer_key)
        return consumer_key

    def channel(name: str) -> str:
        """A channel by name, one node for every endpoint that sends to it (an output
        channel) or listens on it (an internal handler's input channel)."""
        return add(GraphNode(f"channel:{name}", "channel", name))

    def through(origin: str, hops: Sequence[str]) -> str:
        """Link ``origin`` → each hop's channel → its consumer; returns the last node.

        Hop nodes belong to their origin: the copy of a message sent for one route goes to
        the endpoints of that route only, even when other routes use the same channel."""
        previous = origin
        for index, name in enumerate(hops):
            scope = f"{origin}|{'>'.join(hops[: index + 1])}"
            hop = add(GraphNode(f"hop:{scope}", "channel", name))
            link(previous, hop)
            previous = consumed(hop, name, scope)
        return previous

    for bus_key, bus_label in BUSES.values():
        add(GraphNode(bus_key, "bus", bus_label))
    for info in endpoints:
        detail = info.handler
        if info.endpoint_id in chosen_by:
            detail += f"; chosen by {chosen_by[info.endpoint_id]}"
        endpoint = add(
            GraphNode(f"endpoint:{info.endpoint_id}", "endpoint", info.endpoint_id, detail)
        )
        hops = hops_of.get(info.endpoint_id, ())
        # Where routes lead: the endpoint's own input channel when it has one that is
        # consumed, or is the internal endpoint's channel; else each route on its own.
        entry: str | None = None
        if info.kind == "internal" or info.input_channel in consumer_of:
            entry = channel(info.input_channel)
            after = consumed(entry, info.input_channel, entry)
            if hops[:1] == (info.input_channel,):
                hops = hops[1:]
            link(through(after, hops), endpoint)
        bus = BUSES.get(info.kind)
        if bus is not None:
            for route in info.routes:
                detail = "pattern" if info.kind == "event" and is_pattern(route) else ""
                route_key = add(GraphNode(f"route:{info.kind}:{route}", "route", route, detail))
                link(bus[0], route_key)
                if entry is not None:
                    link(route_key, entry)
                else:
                    link(through(route_key, hops), endpoint)
        if info.output_channel is not None:
            link(endpoint, channel(info.output_channel))
    return RoutingGraph(tuple(nodes.values()), tuple(edges))


# -- text -------------------------------------------------------------------------------


def render_text(graph: RoutingGraph) -> str:
    """An indented tree per bus, then trees for anything no bus leads to.

    >>> print(render_text(build_routing_graph([])))  # doctest: +NORMALIZE_WHITESPACE
    command bus
    └── (no handlers)
    <BLANKLINE>
    query bus
    └── (no handlers)
    <BLANKLINE>
    event bus
    └── (no handlers)
    """
    trees = ["\n".join(_tree(graph, root)) for root in graph.roots()]
    return "\n\n".join(trees)


def _tree(graph: RoutingGraph, root: GraphNode) -> Iterator[str]:
    yield _text_label(root)
    children = graph.successors(root.key)
    if not children and root.kind == "bus":
        yield "└── (no handlers)"
    yield from _branches(graph, children, prefix="", ancestors=(root.key,))


def _branches(
    graph: RoutingGraph, children: list[GraphNode], prefix: str, ancestors: tuple[str, ...]
) -> Iterator[str]:
    for index, child in enumerate(children):
        last = index == len(children) - 1
        connector, extension = ("└── ", "    ") if last else ("├── ", "│   ")
        if child.key in ancestors:
            yield f"{prefix}{connector}{_text_label(child)} (cycle: already shown above)"
            continue
        yield f"{prefix}{connector}{_text_label(child)}"
        yield from _branches(
            graph,
            graph.successors(child.key),
            prefix + extension,
            (*ancestors, child.key),
        )


def _text_label(node: GraphNode) -> str:
    if node.kind == "endpoint":
        return f"endpoint {node.label} ({node.detail})"
    if node.kind == "channel":
        return f"channel {node.label}" + (f" ({node.detail})" if node.detail else "")
    if node.kind == "consumer":
        return f"consumer {node.label}"
    return node.label + (f" ({node.detail})" if node.detail else "")


# -- Mermaid ----------------------------------------------------------------------------

_UNSAFE_ID_CHARACTERS = re.compile(r"[^A-Za-z0-9_]+")
# Mermaid entity codes; "#" first so the codes themselves are not escaped again.
_MERMAID_ENTITIES = (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"))
_MERMAID_ORDER: tuple[NodeKind, ...] = ("bus", "route", "endpoint", "channel", "consumer")
_MERMAID_SHAPES: dict[NodeKind, tuple[str, str]] = {
    "bus": ("([", "])"),
    "route": ("[", "]"),
    "endpoint": ("(", ")"),
    "channel": ("[(", ")]"),
    "consumer": ("[[", "]]"),
}


def render_mermaid(graph: RoutingGraph) -> str:
    """A Mermaid ``flowchart LR``: buses are stadiums, routes boxes, endpoints rounded boxes,
    channels cylinders and consumers subroutine boxes."""
    ids = _mermaid_ids(graph.nodes)
    lines = ["flowchart LR"]
    for node in sorted(graph.nodes, key=lambda node: _MERMAID_ORDER.index(node.kind)):
        opening, closing = _MERMAID_SHAPES[node.kind]
        lines.append(f'    {ids[node.key]}{opening}"{_mermaid_label(node)}"{closing}')
    for edge in graph.edges:
        lines.append(f"    {ids[edge.source]} --> {ids[edge.target]}")
    return "\n".join(lines)


def _mermaid_ids(nodes: Iterable[GraphNode]) -> dict[str, str]:
    """Readable ids made of letters, digits and ``_``; a suffix keeps them unique."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for node in nodes:
        base = _UNSAFE_ID_CHARACTERS.sub("_", node.key).strip("_")
        candidate, counter = base, 1
        while candidate in taken:
            counter += 1
            candidate = f"{base}_{counter}"
        taken.add(candidate)
        ids[node.key] = candidate
    return ids


def _mermaid_label(node: GraphNode) -> str:
    text = _mermaid_escape(_text_label(node) if node.kind == "consumer" else node.label)
    if node.detail:
        text += "<br/>" + _mermaid_escape(node.detail)
    return text


def _mermaid_escape(text: str) -> str:
    for character, entity in _MERMAID_ENTITIES:
        text = text.replace(character, entity)
    return text
