"""The routing graph behind ``ecopy graph``: built once as nodes and edges, rendered as an
indented text tree or a Mermaid flowchart.

Both renderings read the same :class:`RoutingGraph`, so they never disagree. Edges run
bus → route → endpoint, endpoint → output channel → the endpoint listening on that channel;
an endpoint fed by a consumer's queue channel is reached through that channel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from ecopy.config.system import ConsumerInfo, MessagingSystem
from ecopy.messaging.endpoint import EndpointInfo
from ecopy.modelling.routing import is_pattern

NodeKind = Literal["bus", "route", "endpoint", "channel"]

# Endpoint kind → (bus node key, bus label), in the order the buses are shown.
BUSES: dict[str, tuple[str, str]] = {
    "command": ("bus:command", "command bus"),
    "query": ("bus:query", "query bus"),
    "event": ("bus:event", "event bus"),
}


@dataclass(frozen=True)
class GraphNode:
    """A bus, route, endpoint or channel; ``key`` is unique within its graph."""

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
    return build_routing_graph(system.endpoints(), system.list_consumers())


def build_routing_graph(
    endpoints: Iterable[EndpointInfo], consumers: Iterable[ConsumerInfo] = ()
) -> RoutingGraph:
    """Build the graph from endpoint and consumer descriptions."""
    consumer_of = {consumer.channel: consumer.name for consumer in consumers}
    nodes: dict[str, GraphNode] = {}
    edges: dict[GraphEdge, None] = {}

    def add(node: GraphNode) -> str:
        nodes.setdefault(node.key, node)
        return node.key

    def link(source: str, target: str) -> None:
        edges.setdefault(GraphEdge(source, target), None)

    def channel(name: str) -> str:
        consumer = consumer_of.get(name)
        detail = f"consumer {consumer}" if consumer is not None else ""
        return add(GraphNode(f"channel:{name}", "channel", name, detail))

    for bus_key, bus_label in BUSES.values():
        add(GraphNode(bus_key, "bus", bus_label))
    for info in endpoints:
        endpoint = add(
            GraphNode(f"endpoint:{info.endpoint_id}", "endpoint", info.endpoint_id, info.handler)
        )
        # A consumer's queue sits between the route (or the producer) and the endpoint.
        entry = endpoint
        if info.kind == "internal" or info.input_channel in consumer_of:
            entry = channel(info.input_channel)
            link(entry, endpoint)
        bus = BUSES.get(info.kind)
        if bus is not None:
            for route in info.routes:
                detail = "pattern" if info.kind == "event" and is_pattern(route) else ""
                route_key = add(GraphNode(f"route:{info.kind}:{route}", "route", route, detail))
                link(bus[0], route_key)
                link(route_key, entry)
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
    return node.label + (f" ({node.detail})" if node.detail else "")


# -- Mermaid ----------------------------------------------------------------------------

_UNSAFE_ID_CHARACTERS = re.compile(r"[^A-Za-z0-9_]+")
# Mermaid entity codes; "#" first so the codes themselves are not escaped again.
_MERMAID_ENTITIES = (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"))
_MERMAID_ORDER: tuple[NodeKind, ...] = ("bus", "route", "endpoint", "channel")
_MERMAID_SHAPES: dict[NodeKind, tuple[str, str]] = {
    "bus": ("([", "])"),
    "route": ("[", "]"),
    "endpoint": ("(", ")"),
    "channel": ("[(", ")]"),
}


def render_mermaid(graph: RoutingGraph) -> str:
    """A Mermaid ``flowchart LR``: buses are stadiums, routes boxes, endpoints rounded boxes
    and channels cylinders."""
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
    text = _mermaid_escape(node.label)
    if node.detail:
        text += "<br/>" + _mermaid_escape(node.detail)
    return text


def _mermaid_escape(text: str) -> str:
    for character, entity in _MERMAID_ENTITIES:
        text = text.replace(character, entity)
    return text
