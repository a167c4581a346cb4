"""Rooms and members."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

from llmchat.models import Member, MemberJoin, Room, RoomCreate

from .deps import RoomPath, StateDep, check_room_name
from .errors import responses

router = APIRouter(prefix="/rooms", tags=["rooms"])


class RoomList(BaseModel):
    rooms: list[Room]


class MemberList(BaseModel):
    members: list[Member]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Room,
    responses=responses(409, 422, 503),
    summary="Create a room",
)
async def create_room(body: RoomCreate, state: StateDep) -> Room:
    return await state.rooms.create(body)


@router.get("", response_model=RoomList, responses=responses(503), summary="List rooms")
async def list_rooms(state: StateDep) -> RoomList:
    return RoomList(rooms=await state.rooms.all())


@router.get("/{room}", response_model=Room, responses=responses(404, 503), summary="Get a room")
async def get_room(room: RoomPath, state: StateDep) -> Room:
    return await state.rooms.require(check_room_name(room))


@router.post(
    "/{room}/members",
    response_model=Member,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": Member, "description": "Already a member"},
        **responses(404, 409, 422, 503),
    },
    summary="Join a room with a display name",
)
async def join_room(
    room: RoomPath, body: MemberJoin, state: StateDep, response: Response
) -> Member:
    found = await state.rooms.require(check_room_name(room))
    member, created = await state.rooms.join(found, body.name)
    if not created:
        response.status_code = status.HTTP_200_OK
    return member


@router.get(
    "/{room}/members",
    response_model=MemberList,
    responses=responses(404, 503),
    summary="List a room's members",
)
async def list_members(room: RoomPath, state: StateDep) -> MemberList:
    await state.rooms.require(check_room_name(room))
    return MemberList(members=await state.rooms.members(room))
