"""The Grafana dashboard JSON is well-formed for Grafana's dashboard model (schemaVersion 39):
unique panel ids, a 24-column grid without overlaps, the $datasource and $room variables, and a
Prometheus target with an expression on every panel."""

from __future__ import annotations

import json
from typing import Any

from tests.chart.conftest import CHART

BOARD: dict[str, Any] = json.loads((CHART / "dashboards" / "llm-in-the-chat.json").read_text())
PANEL_TYPES = {"row", "timeseries", "stat", "bargauge", "gauge", "table", "heatmap"}


def test_dashboard_model() -> None:
    assert BOARD["schemaVersion"] == 39
    assert BOARD["uid"] == "llm-in-the-chat" and BOARD["title"] == "LLM-In-The-Chat"
    variables = {v["name"]: v for v in BOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["room"]["type"] == "query"
    assert variables["room"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert variables["room"]["includeAll"] is True and variables["room"]["allValue"] == ".*"


def test_panels_grid_and_targets() -> None:
    panels = BOARD["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for p in panels:
        assert p["type"] in PANEL_TYPES, p["title"]
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] >= 1 and g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert p["description"], p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["refId"] and "llmchat_" in t["expr"], (p["title"], t)
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
    uses_room = [
        p["title"] for p in panels if any("$room" in t["expr"] for t in p.get("targets", []))
    ]
    assert len(uses_room) >= 8


def test_the_five_measures_and_the_rest_are_on_it() -> None:
    exprs = " ".join(t["expr"] for p in BOARD["panels"] for t in p.get("targets", []))
    for metric in (
        "llmchat_message_latency_seconds",
        "llmchat_ai_first_token_seconds",
        "llmchat_ai_response_seconds",
        "llmchat_queue_time_seconds",
        "llmchat_leader_election_seconds",
        "llmchat_redis_up",
        "llmchat_elections_total",
        "llmchat_room_leader",
        "llmchat_judge_parse_failures_total",
        "llmchat_judge_verdicts_total",
        "llmchat_judge_score",
        "llmchat_model_rating",
        "llmchat_model_rating_bound",
        "llmchat_websocket_connections",
        "llmchat_messages_total",
        "llmchat_operator_reconcile_duration_seconds",
        "llmchat_operator_reconcile_errors_total",
        "llmchat_operator_rooms",
    ):
        assert metric in exprs, metric
