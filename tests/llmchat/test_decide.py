"""The routing decision, as a pure function."""

from __future__ import annotations

from typing import Any

import pytest

from llmchat.keys import LEADER_QUEUE
from llmchat.models import EntryKind, Room, RoomMode, RoomModel
from llmchat.router import Route, decide, mentions


def room(mode: RoomMode = RoomMode.LEADER, models: tuple[str, ...] = ("ada", "bob")) -> Room:
    return Room(name="r", mode=mode, models=[RoomModel(name=m) for m in models], created_at=0)


def human(r: Room, text: str, turn: int = 1, round_due: bool = False) -> Route:
    return decide(
        r,
        kind=EntryKind.HUMAN,
        author="alice",
        text=text,
        members={"alice", "carol"},
        streak=0,
        max_model_streak=3,
        turn=turn,
        round_due=round_due,
    )


def test_mentions_are_ordered_unique_and_not_emails() -> None:
    assert mentions("@ada hi @bob, and @ada again; mail x@ada.com") == ["ada", "bob"]
    assert mentions("trailing @bob.") == ["bob"]
    assert mentions("no mentions") == []


def test_leader_mode_asks_whoever_holds_the_lease() -> None:
    assert human(room(), "hello") == Route([LEADER_QUEUE], "leader")
    assert not human(room(), "hello").is_round


def test_every_nth_turn_and_the_turn_after_a_failover_are_rounds() -> None:
    r = room()  # round_every defaults to 5
    reasons = [human(r, "hi", turn=t).reason for t in (4, 5, 6, 10)]
    assert reasons == ["leader", "round", "leader", "round"]
    assert human(r, "hi", turn=5).targets == ["ada", "bob"]
    assert human(r, "hi", turn=5).is_round
    assert human(r, "hi", turn=2, round_due=True).reason == "round-after-failover"
    never = Room(name="r", models=r.models, round_every=0, created_at=0)
    assert human(never, "hi", turn=5).targets == [LEADER_QUEUE]
    single = room(models=("ada",))
    assert human(single, "hi", turn=5, round_due=True).targets == [LEADER_QUEUE]


def test_all_mode_asks_every_model() -> None:
    assert human(room(RoomMode.ALL), "hello") == Route(["ada", "bob"], "all")
    assert human(room(RoomMode.ALL), "hello").is_round


def test_mentions_win_over_the_mode() -> None:
    assert human(room(RoomMode.ALL), "@Ada what do you think?") == Route(["ada"], "mention")
    assert human(room(), "@bob @ada").targets == ["bob", "ada"]
    assert human(room(), "@everyone thoughts?").targets == ["ada", "bob"]


def test_unknown_names_are_reported_but_people_are_not_unknown() -> None:
    r = human(room(), "@carol and @zed, ask @ada")
    assert r.targets == ["ada"]
    assert r.unknown == ["zed"]


def test_model_replies_route_only_on_mentions_and_stop_at_the_cap() -> None:
    r = room()
    kw: dict[str, Any] = {"kind": EntryKind.MODEL, "author": "ada", "members": set()}
    assert decide(r, text="plain answer", streak=0, max_model_streak=3, **kw).targets == []
    assert decide(r, text="@bob agree?", streak=0, max_model_streak=3, **kw).targets == ["bob"]
    assert decide(r, text="@ada I think", streak=0, max_model_streak=3, **kw).targets == []
    capped = decide(r, text="@bob agree?", streak=3, max_model_streak=3, **kw)
    assert capped.targets == []
    assert capped.capped


@pytest.mark.parametrize("kind", [EntryKind.SYSTEM, EntryKind.JUDGE])
def test_system_and_judge_entries_route_nowhere(kind: EntryKind) -> None:
    r = decide(
        room(), kind=kind, author="system", text="@ada", members=set(), streak=0, max_model_streak=3
    )
    assert r.targets == []


def test_a_room_without_models_routes_nowhere() -> None:
    assert human(room(models=()), "hello").targets == []
