"""Rooms, members and invitations: join, leave, remove, invite, withdraw an invitation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field

from llmchat.auth import Identity
from llmchat.models import (
    DisplayName,
    Member,
    MemberJoin,
    Room,
    RoomCreate,
    RoomModel,
)
from llmchat.rooms import may_see

from .access import member_room, visible_room
from .deps import AdminDep, IdentityDep, RoomPath, StateDep
from .errors import ApiError, responses

router = APIRouter(prefix="/rooms", tags=["rooms"])


class RoomModelInfo(RoomModel):
    system_prompt: str | None = Field(  # type: ignore[assignment]
        default=None,
        description="The model's instructions: shown to the room's members (and the admin) "
        "only; null for everyone else.",
    )


class RoomInfo(Room):
    """A room as a caller sees it (``models[].system_prompt`` for members only)."""

    models: list[RoomModelInfo] = Field(default_factory=list)  # type: ignore[assignment]


class RoomList(BaseModel):
    rooms: list[RoomInfo]


def room_info(room: Room, members_view: bool) -> RoomInfo:
    """``room`` for a caller: with its models' system prompts only for members (and the admin)."""
    data = room.model_dump()
    if not members_view:
        for model in data["models"]:
            model["system_prompt"] = None
    return RoomInfo.model_validate(data)


class MemberList(BaseModel):
    members: list[Member]


class Invite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DisplayName = Field(description="A registered user's name.")


class Invitation(BaseModel):
    room: str
    name: str
    created: bool = Field(description="False when the person was already invited.")


class InvitationList(BaseModel):
    invited: list[str] = Field(description="Invited names (case-folded), sorted.")


NamePath = Annotated[str, Path(description="A person's name.", min_length=1, max_length=40)]


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
        return RoomList(rooms=[room_info(r, True) for r in rooms])
    assert identity.user is not None
    standing = await state.rooms.standing([r.name for r in rooms], identity.user)
    return RoomList(
        rooms=[
            room_info(room, member)
            for room, (member, invited) in zip(rooms, standing, strict=True)
            if may_see(room, admin=False, member=member, invited=invited)
        ]
    )


@router.get(
    "/{room}",
    response_model=RoomInfo,
    responses=responses(401, 404, 503),
    summary="Get a room (its models' system prompts for members only)",
)
async def get_room(room: RoomPath, state: StateDep, identity: IdentityDep) -> RoomInfo:
    found = await visible_room(state, room, identity)
    member = identity.admin or await _is_member(state, room, identity)
    return room_info(found, member)


async def _is_member(state: StateDep, room: str, identity: Identity) -> bool:
    assert identity.user is not None
    return await state.rooms.member(room, identity.user) is not None


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


@router.delete(
    "/{room}/members/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(401, 403, 404, 503),
    summary="Leave a room (your own name), or remove a member (the admin)",
    description="Leaving takes you out of the member list and the live room; a public room, or "
    "one you are still invited to, can be joined again. The admin removing someone also "
    "withdraws their invitation, so they stay out of an invitation-only room. Open "
    "WebSockets of the person in the room are closed.",
)
async def remove_member(
    room: RoomPath, name: NamePath, state: StateDep, identity: IdentityDep
) -> Response:
    if not identity.admin:
        await member_room(state, room, identity)  # 404 hidden, 403 not a member
        assert identity.user is not None
        if name.casefold() != identity.user.casefold():
            raise ApiError(
                403, "forbidden", f"you are {identity.user!r}: only the admin removes others"
            )
    else:
        await visible_room(state, room, identity)
    if not await state.rooms.leave(room, name):
        raise ApiError(404, "member_not_found", f"{name!r} is not a member of room {room!r}")
    if identity.admin:
        await state.rooms.uninvite(room, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{room}/invitations",
    response_model=InvitationList,
    responses=responses(401, 403, 404, 503),
    summary="Who is invited (members of the room, or the admin)",
)
async def list_invitations(
    room: RoomPath, state: StateDep, identity: IdentityDep
) -> InvitationList:
    await member_room(state, room, identity)
    return InvitationList(invited=await state.rooms.invitations(room))


@router.delete(
    "/{room}/invitations/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(401, 403, 404, 503),
    summary="Withdraw an invitation (members of the room, or the admin)",
    description="The person can no longer join an invitation-only room (someone who already "
    "joined stays a member: remove them with DELETE /rooms/{room}/members/{name}).",
)
async def withdraw_invitation(
    room: RoomPath, name: NamePath, state: StateDep, identity: IdentityDep
) -> Response:
    await member_room(state, room, identity)
    if not await state.rooms.uninvite(room, name):
        raise ApiError(404, "invitation_not_found", f"{name!r} is not invited to room {room!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
