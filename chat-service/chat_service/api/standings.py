"""Who leads a room and how its models rate."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter
from pydantic import BaseModel, Field

from llmchat import keys
from llmchat.health import healthy_models
from llmchat.lease import RedisLease
from llmchat.ratings import INITIAL, Rating, RatingStore

from .access import member_room
from .deps import IdentityDep, RoomPath, StateDep
from .errors import responses

router = APIRouter(prefix="/rooms/{room}", tags=["standings"])


class Standing(Rating):
    healthy: bool = Field(description="A replica of the model is alive (heartbeat not lapsed).")
    leader: bool


class Leaderboard(BaseModel):
    room: str
    leader: str | None
    standings: list[Standing] = Field(description="Best rating first.")


class Leadership(BaseModel):
    room: str
    leader: str | None = Field(description="The model holding the room's lease, if held.")
    term: int = Field(description="Lease transitions so far (the fencing token).")
    expires_in_s: float | None
    since: float | None = Field(description="When the current leader was elected (epoch s).")
    reason: str | None = Field(description="initial, failover or handover.")
    election_s: float | None = Field(description="How long the room was without a leader.")


async def _leadership(state: StateDep, room: str) -> Leadership:
    record = await RedisLease(state.redis, f"room-{room}", key=keys.room_lease(room)).read()
    raw = await state.redis.get(keys.leader(room))
    info = json.loads(raw) if raw else {}
    held = record.held()
    expires = record.expires_at
    return Leadership(
        room=room,
        leader=record.holder if held else None,
        term=record.term,
        expires_in_s=round(expires - time.time(), 3) if held and expires else None,
        since=info.get("since") if held else None,
        reason=info.get("reason") if held else None,
        election_s=info.get("election_s") if held else None,
    )


@router.get(
    "/leader",
    response_model=Leadership,
    responses=responses(401, 403, 404, 503),
    summary="The room's current leader (from its lease)",
)
async def get_leader(room: RoomPath, state: StateDep, identity: IdentityDep) -> Leadership:
    await member_room(state, room, identity)
    return await _leadership(state, room)


@router.get(
    "/ratings",
    response_model=Leaderboard,
    responses=responses(401, 403, 404, 503),
    summary="The room's leaderboard: ratings from the judge's verdicts",
)
async def get_ratings(room: RoomPath, state: StateDep, identity: IdentityDep) -> Leaderboard:
    found, _ = await member_room(state, room, identity)
    ratings = await RatingStore(state.redis).all(room)
    alive = await healthy_models(state.redis, room)
    leader = (await _leadership(state, room)).leader
    standings = [
        Standing(
            **(ratings.get(m) or Rating(model=m, rating=INITIAL)).model_dump(),
            healthy=m in alive,
            leader=m == leader,
        )
        for m in found.model_names()
    ]
    standings.sort(key=lambda s: -s.rating)
    return Leaderboard(room=room, leader=leader, standings=standings)
