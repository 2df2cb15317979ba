"""app.topology(): the dataflow graph, as text and as a Mermaid diagram."""

from __future__ import annotations

from typing import Any

import streamnb as faust
from streamnb.app.topology import Node
from streamnb.testing import settle, test_app


class PageView(faust.Record):
    user: str
    page: str


def build() -> tuple[faust.App, Any]:
    app = test_app("topo", topic_partitions=2)
    views = app.topic("views", value_type=PageView)
    alerts = app.topic("alerts")
    per_page = app.Table("per_page", default=int)
    per_5s = app.Table("per_5s", default=int).tumbling(5, expires=60)

    @app.agent(views)
    async def count(stream: Any) -> None:
        async for view in stream.group_by(PageView.page):
            per_page[view.page] += 1
            per_5s[view.page] += 1
            if per_page[view.page] == 3:
                await alerts.send(value=view.page)

    @app.agent(alerts, sink=[app.topic("audit")])
    async def notify(stream: Any) -> Any:
        async for page in stream:
            yield page

    return app, count


async def test_agents_tables_and_internal_topics() -> None:
    app, count = build()
    before = app.topology()
    agent = Node("agent", "count")
    assert (Node("topic", "views"), agent, "reads") in [(e.source, e.target, e.label) for e in before.edges]
    labels = {(e.source.name, e.target.name): e.label for e in before.edges}
    assert labels[("count", "per_page")] == "writes" and labels[("count", "per_5s")] == "writes"  # found in its code
    assert labels[("count", "alerts")] == "sends"
    assert labels[("count", "topo-count-dlq")] == "dead letters to"
    assert labels[("per_page", "topo-per_page-changelog")] == "changelog"
    assert labels[("alerts", "notify")] == "reads" and labels[("notify", "audit")] == "sink"
    assert not any(n.detail == "repartition" for n in before.nodes)  # group_by's topic: once the agent ran
    async with app:
        for user in "abcd":
            await app.topics["views"].send(key=user, value=PageView(user=user, page="/"))
        await settle(app)
    after = app.topology()
    repartition = [n for n in after.nodes if n.detail == "repartition"]
    assert len(repartition) == 1 and repartition[0].name.startswith("topo-count-")
    text = str(after)
    assert text.splitlines()[0] == "Topology of app 'topo'"
    assert "  agent count\n    reads   topic views\n" in text
    assert f"    repartitions to topic {repartition[0].name}" in text
    assert "  table per_5s [tumbling(5s" in text or "  table per_5s [" in text
    diagram = after.mermaid()
    assert diagram.startswith("flowchart LR") and '(["count"])' in diagram and '[("per_page")]' in diagram
    assert '[/"views"/]' in diagram and "-->|reads|" in diagram and "-.->|changelog|" in diagram
    bundle = after._repr_mimebundle_()
    assert bundle["text/markdown"] == f"```mermaid\n{diagram}\n```" and bundle["text/plain"] == text
