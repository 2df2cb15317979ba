"""The dataflow of an app as a graph: topics, agents, tables and the topics streamnb makes for them.

``app.topology()`` returns a :class:`Topology`: nodes (topics, agents,
tables) and edges (reads, writes, sends, changelogs, repartitions, dead
letters, sinks). Like Kafka Streams' ``Topology.describe()`` it prints as
text; in a notebook it shows as a Mermaid flowchart (``text/markdown`` with a
``mermaid`` block, which JupyterLab, Notebook 7 and GitHub draw, and
``text/vnd.mermaid``), and ``.mermaid()`` gives the diagram's source.

What an agent writes and sends is found in its code: the tables and topics
its function (and the functions it defines) names. A ``group_by``
repartition topic appears once the agent ran.

>>> from streamnb import App
>>> app = App("shop", broker="memory://")
>>> orders = app.topic("orders")
>>> totals = app.Table("totals", default=int)
>>> @app.agent(orders)
... async def total(stream):
...     async for order in stream:
...         totals[order["user"]] += order["amount"]
>>> print(app.topology())
Topology of app 'shop'
  agent total
    reads   topic orders
    writes  table totals
    dead letters to topic shop-total-dlq
  table totals
    changelog topic shop-totals-changelog
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import CodeType, FunctionType
from typing import TYPE_CHECKING, Any, Protocol

from .. import naming
from ..tables.table import Table
from ..tables.windowed import WindowedTable
from ..topics import Topic

if TYPE_CHECKING:
    from ..processing.agents import Agent


class TopologyHost(Protocol):
    """What :func:`topology` reads of an App."""

    @property
    def id(self) -> str: ...
    @property
    def agents(self) -> Mapping[str, Agent]: ...
    @property
    def tables(self) -> Mapping[str, Table[Any, Any]]: ...
    @property
    def topics(self) -> Mapping[str, Topic[Any, Any]]: ...

__all__ = ["Edge", "Node", "Topology", "TopologyHost", "topology"]


@dataclass(frozen=True)
class Node:
    """A topic, an agent or a table."""

    kind: str
    """``topic``, ``agent`` or ``table``."""
    name: str
    detail: str = ""
    """For a table its window (``tumbling 5s``), for an internal topic what it is for."""


@dataclass(frozen=True)
class Edge:
    """``source -> target``: how data moves (``reads``, ``writes``, ``sends``, ``changelog``...)."""

    source: Node
    target: Node
    label: str


@dataclass
class Topology:
    """The graph of an app's dataflow; ``str()`` describes it, ``mermaid()`` draws it."""

    app_id: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def add(self, source: Node, target: Node, label: str) -> None:
        for node in (source, target):
            if node not in self.nodes:
                self.nodes.append(node)
        edge = Edge(source, target, label)
        if edge not in self.edges:
            self.edges.append(edge)

    def describe(self) -> str:
        """The graph as text, one block per agent and per table (what ``print()`` shows)."""
        lines = [f"Topology of app {self.app_id!r}"]
        for node in self.nodes:
            if node.kind == "topic":
                continue
            lines.append(f"  {node.kind} {node.name}" + (f" [{node.detail}]" if node.detail else ""))
            for edge in self.edges:
                if edge.target == node and edge.label == "reads":
                    lines.append(f"    reads   {_named(edge.source)}")
            for edge in self.edges:
                if edge.source == node:
                    verb = {"writes": "writes ", "sends": "sends to", "reads": "feeds  "}.get(edge.label, edge.label)
                    lines.append(f"    {verb} {_named(edge.target)}")
        return "\n".join(lines)

    def mermaid(self) -> str:
        """The graph as a Mermaid flowchart: topics as parallelograms, agents rounded, tables as cylinders."""
        ids = {node: f"{node.kind[:2]}{index}" for index, node in enumerate(self.nodes)}
        lines = ["flowchart LR"]
        for node, ident in ids.items():
            text = _label(node.name + (f" ({node.detail})" if node.detail else ""))
            shape = {"topic": '[/"{}"/]', "agent": '(["{}"])', "table": '[("{}")]'}[node.kind]
            lines.append(f"  {ident}{shape.format(text)}")
        for edge in self.edges:
            arrow = "-.->" if edge.label in ("changelog", "dead letters to", "late events") else "-->"
            lines.append(f"  {ids[edge.source]} {arrow}|{_label(edge.label)}| {ids[edge.target]}")
        lines += [
            "  classDef topic fill:#eef6ff,stroke:#4a78b5",
            "  classDef agent fill:#fff4e0,stroke:#c07a00",
            "  classDef table fill:#eefbea,stroke:#3c8a2e",
        ]
        for kind in ("topic", "agent", "table"):
            members = [ids[n] for n in self.nodes if n.kind == kind]
            if members:
                lines.append(f"  class {','.join(members)} {kind}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        return f"<Topology of {self.app_id!r}: {len(self.nodes)} nodes, {len(self.edges)} edges>"

    def _repr_mimebundle_(self, **_kwargs: Any) -> dict[str, Any]:
        diagram = self.mermaid()
        return {
            "text/plain": self.describe(),
            "text/markdown": f"```mermaid\n{diagram}\n```",
            "text/vnd.mermaid": diagram,
        }


def topology(app: TopologyHost) -> Topology:
    """The dataflow graph of ``app`` (what ``app.topology()`` returns)."""
    graph = Topology(app.id)
    for agent in list(app.agents.values()):
        _agent(graph, app, agent)
    for table in list(app.tables.values()):
        node = _table_node(table)
        if node not in graph.nodes:
            graph.nodes.append(node)
        graph.add(node, Node("topic", table.changelog.name, "changelog"), "changelog")
        if table.late_topic is not None:
            graph.add(node, Node("topic", table.late_topic.name, "late events"), "late events")
        if table.emit_final is not None:
            graph.add(node, Node("topic", table.emit_final.name), "final results")
    return graph


def _agent(graph: Topology, app: TopologyHost, agent: Agent) -> None:
    me = Node("agent", agent.name)
    graph.nodes.append(me)
    for name in agent.read_topics():
        detail = "repartition" if name.endswith("-repartition") else ""
        graph.add(Node("topic", name, detail), me, "reads")
    prefix = f"{app.id}-{agent.name}-"
    for name, topic in list(app.topics.items()):  # group_by topics the agent made (and fed)
        if topic.internal and name.startswith(prefix) and name.endswith("-repartition"):
            graph.add(me, Node("topic", name, "repartition"), "repartitions to")
            graph.add(Node("topic", name, "repartition"), me, "reads")
    for obj in _named_objects(agent.fun):
        if isinstance(obj, Table):
            graph.add(me, _table_node(obj), "writes")
        elif isinstance(obj, WindowedTable) and isinstance(obj.table, Table):
            graph.add(me, _table_node(obj.table), "writes")
        elif isinstance(obj, Topic) and obj.name != agent.channel.name:
            graph.add(me, Node("topic", obj.name), "sends")
        elif _is_agent(obj) and obj is not agent:
            graph.add(me, Node("topic", obj.channel.name), "sends")
    for sink in agent.sinks:
        if isinstance(sink, Topic):
            graph.add(me, Node("topic", sink.name), "sink")
        elif _is_agent(sink):
            graph.add(me, Node("topic", sink.channel.name), "sink")
    graph.add(me, Node("topic", naming.dead_letter_topic(app.id, agent.name), "dead letters"), "dead letters to")


def _table_node(table: Table[Any, Any]) -> Node:
    window = table.window
    return Node("table", table.name, repr(window.window) if window is not None else "")


def _is_agent(obj: Any) -> bool:
    return hasattr(obj, "read_topics") and hasattr(obj, "channel") and hasattr(obj, "fun")


def _named_objects(fun: Any) -> Iterator[Any]:
    """The objects a function's code names: its globals and closure cells, and those of the code it defines."""
    fun = getattr(fun, "__wrapped__", fun)
    if not isinstance(fun, FunctionType):
        return
    scope = fun.__globals__
    cells = dict(zip(fun.__code__.co_freevars, fun.__closure__ or (), strict=False))
    seen: set[int] = set()
    for name in _names(fun.__code__):
        if name in cells:
            try:
                obj = cells[name].cell_contents
            except ValueError:  # an empty cell
                continue
        elif name in scope:
            obj = scope[name]
        else:
            continue
        if id(obj) not in seen:
            seen.add(id(obj))
            yield obj


def _names(code: CodeType) -> Iterator[str]:
    yield from code.co_names
    yield from code.co_freevars
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _names(const)


def _named(node: Node) -> str:
    return f"{node.kind} {node.name}" + (f" [{node.detail}]" if node.detail and node.kind == "table" else "")


def _label(text: str) -> str:
    """Text safe inside a quoted Mermaid label."""
    return re.sub(r'["<>|]', lambda m: f"#{ord(m.group())};", text)
