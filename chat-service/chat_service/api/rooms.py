"""Rooms, members and invitations."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from llmchat.models import DisplayName, Member, MemberJoin, Room, RoomCreate, RoomVisibility

from .deps import (
    AdminDep,
    IdentityDep,
    RoomPath,
    StateDep,
    member_room,
    visible_room,
)
from .errors import ApiError, responses

router = APIRouter(prefix="/rooms", tags=["rooms"])


class RoomList(BaseModel):
    rooms: list[Room]


class MemberList(BaseModel):
    members: list[Member]


class Invite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DisplayName = Field(description="A registered user's name.")


class Invitation(BaseModel):
    room: str
    name: str
    created: bool = Field(description="False when the person was already invited.")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Room,
    responses=responses(401, 403, 409, 422, 503),
    summary="Create a room (admin)",
)
async def create_room(body: RoomCreate, state: StateDep, _: AdminDep) -> Room:
    return await state.rooms.create(body)


@router.get(
    "",
    response_model=RoomList,
    responses=responses(401, 503),
    summary="List the rooms you may see: public ones and those you belong to or are invited to",
)
async def list_rooms(state: StateDep, identity: IdentityDep) -> RoomList:
    rooms = await state.rooms.all()
    if identity.admin:
        return RoomList(rooms=rooms)
    assert identity.user is not None
    private = [r for r in rooms if r.visibility != RoomVisibility.PUBLIC]
    admitted = dict(
        zip(
            (r.name for r in private),
            await state.rooms.admitted([r.name for r in private], identity.user),
            strict=True,
        )
    )
    return RoomList(rooms=[r for r in rooms if admitted.get(r.name, True)])


@router.get(
    "/{room}", response_model=Room, responses=responses(401, 404, 503), summary="Get a room"
)
async def get_room(room: RoomPath, state: StateDep, identity: IdentityDep) -> Room:
    return await visible_room(state, room, identity)


@router.post(
    "/{room}/members",
    response_model=Member,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": Member, "description": "Already a member"},
        **responses(401, 403, 404, 409, 422, 503),
    },
    summary="Join a room (public rooms: anyone signed in; invitation-only: the invited)",
)
async def join_room(
    room: RoomPath,
    state: StateDep,
    identity: IdentityDep,
    response: Response,
    body: MemberJoin | None = None,
) -> Member:
    found = await visible_room(state, room, identity)
    if identity.admin:
        if body is None:
            raise ApiError(422, "invalid_request", "body.name: the admin must name who joins")
        name = body.name
    else:
        assert identity.user is not None
        name = identity.user
        if body is not None and body.name.casefold() != name.casefold():
            raise ApiError(403, "forbidden", f"you are {name!r}; you cannot join as {body.name!r}")
        # visible_room let the caller through: the room is public, or they were invited
    member, created = await state.rooms.join(found, name)
    if not created:
        response.status_code = status.HTTP_200_OK
    return member


@router.get(
    "/{room}/members",
    response_model=MemberList,
    responses=responses(401, 403, 404, 503),
    summary="List a room's members",
)
async def list_members(room: RoomPath, state: StateDep, identity: IdentityDep) -> MemberList:
    await member_room(state, room, identity)
    return MemberList(members=await state.rooms.members(room))


@router.post(
    "/{room}/invitations",
    response_model=Invitation,
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403, 404, 422, 503),
    summary="Invite a registered user (members of the room, or the admin)",
)
async def invite(
    room: RoomPath, body: Invite, state: StateDep, identity: IdentityDep
) -> Invitation:
    await member_room(state, room, identity)
    user = await state.users.get(body.name)
    if user is None:
        raise ApiError(404, "user_not_found", f"nobody has signed up as {body.name!r}")
    created = await state.rooms.invite(room, user.name)
    return Invitation(room=room, name=user.name, created=created)
