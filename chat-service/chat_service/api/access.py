"""The checks both edges (REST and WebSocket) make before they serve a room: who is calling,
which rooms they may see, whether a room name and a resume cursor are valid.

They raise ``ApiError``, which the REST edge answers as an HTTP error and the WebSocket edge as
an error frame and a close code. The rule of who may know of a room is
``llmchat.rooms.may_see``; this module reads what it needs and applies it.
"""

from __future__ import annotations

from chat_service.state import ServiceState
from llmchat.auth import AuthError, Identity, is_admin_credential
from llmchat.ids import parse_stream_id
from llmchat.models import ROOM_NAME_RE, Member, Room
from llmchat.rooms import may_see
from llmchat.users import Standing

from .errors import ApiError

SIGN_IN_HINT = "send 'Authorization: Bearer <token>' (POST /api/v1/auth/signup gives one)"


async def authenticate(state: ServiceState, token: str) -> Identity:
    """The caller a token names; raises ApiError 401 when it names nobody: a bad or expired
    token, or one whose user was deleted or signed out since (checked on every use)."""
    admin = state.settings.admin_token
    if admin is not None and is_admin_credential(token, admin.get_secret_value()):
        return Identity(user=None, admin=True)
    try:
        identity = state.signer.verify(token)
    except AuthError as exc:
        raise ApiError(401, exc.code, exc.message, {"WWW-Authenticate": "Bearer"}) from exc
    await check_standing(state, identity)
    return identity


async def check_standing(state: ServiceState, identity: Identity) -> None:
    """Raise ApiError 401 ``token_revoked`` unless the token's user still exists as the same
    registration and has not signed out since the token was made."""
    if identity.user is None:
        return
    problem = standing_problem(identity, await state.users.standing(identity.user))
    if problem:
        raise ApiError(401, "token_revoked", problem, {"WWW-Authenticate": "Bearer"})


def standing_problem(identity: Identity, standing: Standing) -> str | None:
    if standing.user is None or standing.user.uid != identity.uid:
        return (
            f"the token's user {identity.user!r} no longer exists (the name may belong to "
            "someone else now); sign in again"
        )
    if standing.version != identity.version:
        return "the token was signed out; sign in again"
    return None


def check_room_name(room: str) -> str:
    if not ROOM_NAME_RE.match(room):
        raise ApiError(404, "room_not_found", f"room {room!r} does not exist (not a valid name)")
    return room


def check_cursor(cursor: str) -> str:
    """A resume cursor must be a stream id: ApiError 400 ``invalid_cursor`` if it is not."""
    try:
        parse_stream_id(cursor)
    except ValueError as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from exc
    return cursor


def hidden(room: str) -> ApiError:
    """What someone who may not see an invitation-only room is told: that it does not exist."""
    return ApiError(404, "room_not_found", f"room {room!r} does not exist")


async def visible_room(state: ServiceState, room: str, identity: Identity) -> Room:
    """The room, if the caller may know of it: public rooms, or rooms they belong to or were
    invited to; anything else is 404, so invitation-only rooms do not leak their names. One
    read path (``RoomStore.access``) for a missing room and a hidden one."""
    found, member, invited = await _access(state, room, identity)
    if may_see(found, admin=identity.admin, member=member is not None, invited=invited):
        return found
    raise hidden(room)


async def member_room(
    state: ServiceState, room: str, identity: Identity
) -> tuple[Room, Member | None]:
    """The room and the caller's membership (None for the admin), if they belong to it: 403
    ``not_a_member`` for a room they may see but have not joined, 404 for one they may not see.
    The same reads whatever the room's visibility, and whether it exists."""
    found, member, invited = await _access(state, room, identity)
    if identity.admin:
        return found, None
    if member is not None:
        return found, member
    if not may_see(found, admin=False, member=False, invited=invited):
        raise hidden(room)
    raise ApiError(
        403,
        "not_a_member",
        f"{identity.user!r} has not joined room {room!r}: POST /api/v1/rooms/{room}/members",
    )


async def _access(
    state: ServiceState, room: str, identity: Identity
) -> tuple[Room, Member | None, bool]:
    access = await state.rooms.access(check_room_name(room), identity.user)
    if access.room is None:
        raise hidden(room)
    return access.room, access.member, access.invited
