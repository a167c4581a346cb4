"""Dependencies shared by the routes: the service state, who is calling, room access."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chat_service.state import ServiceState
from llmchat.auth import AuthError, Identity, is_admin_credential
from llmchat.models import ROOM_NAME_RE, Member, Room, RoomVisibility
from llmchat.ratelimit import Limit
from llmchat.users import Standing

from .errors import ApiError


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]
RoomPath = Annotated[str, Path(description="Room name.", max_length=63)]

_bearer = HTTPBearer(auto_error=False, description="A user token, or the admin credential.")

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


async def get_identity(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "unauthenticated", SIGN_IN_HINT, {"WWW-Authenticate": "Bearer"})
    return await authenticate(state, credentials.credentials)


IdentityDep = Annotated[Identity, Depends(get_identity)]


def require_admin(identity: IdentityDep, state: StateDep) -> Identity:
    if not identity.admin:
        hint = (
            "present the admin credential"
            if state.settings.admin_token is not None
            else "admin operations are disabled (LLMCHAT_ADMIN_TOKEN is not set)"
        )
        raise ApiError(403, "admin_required", f"this needs the admin credential: {hint}")
    return identity


AdminDep = Annotated[Identity, Depends(require_admin)]


def require_user(identity: IdentityDep) -> str:
    if identity.user is None:
        raise ApiError(403, "user_required", "this needs a user token, not the admin credential")
    return identity.user


UserDep = Annotated[str, Depends(require_user)]


def check_room_name(room: str) -> str:
    if not ROOM_NAME_RE.match(room):
        raise ApiError(404, "room_not_found", f"room {room!r} does not exist (not a valid name)")
    return room


def hidden(room: str) -> ApiError:
    """What someone who may not see an invitation-only room is told: that it does not exist."""
    return ApiError(404, "room_not_found", f"room {room!r} does not exist")


async def visible_room(state: ServiceState, room: str, identity: Identity) -> Room:
    """The room, if the caller may know of it: public rooms, or rooms they belong to or were
    invited to; anything else is 404, so invitation-only rooms do not leak their names. One
    read path (``RoomStore.access``) for a missing room and a hidden one."""
    found, member, invited = await _access(state, room, identity)
    if identity.admin or found.visibility == RoomVisibility.PUBLIC or member or invited:
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
    if found.visibility != RoomVisibility.PUBLIC and not invited:
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


def room_user_limit(state: ServiceState, room: Room) -> Limit:
    """The per-person message limit in a room: the room's own, else the service's."""
    own = room.limits
    default = state.settings.user_limit
    return Limit(
        own.messages_per_minute if own.messages_per_minute is not None else default.per_minute,
        own.burst if own.burst is not None else default.burst,
    )


def room_max_bytes(state: ServiceState, room: Room) -> int:
    own = room.limits.max_message_bytes
    return min(own, state.settings.max_message_bytes) if own else state.settings.max_message_bytes


def user_bucket(room: Room, user: str) -> str:
    """Whose bucket a person's message takes from: one per person across the rooms on the
    service's limit, and one per person *and room* in a room with limits of its own. A bucket
    is only ever refilled at one rate to one size, so a room with generous limits cannot fill
    up the bucket another room's limit drains (room names hold no '/', so the key is
    unambiguous)."""
    own = room.limits.messages_per_minute is not None or room.limits.burst is not None
    return f"{room.name}/{user.casefold()}" if own else user.casefold()


async def check_post_limits(state: ServiceState, room: Room, user: str) -> None:
    """Take one message from the person's and the room's buckets (RateLimitedError if empty)."""
    await state.limiter.check("user", user_bucket(room, user), room_user_limit(state, room))
    await state.limiter.check("room", room.name, state.settings.room_limit)


def text_size_error(text: str, limit: int) -> str | None:
    """A message naming the problem with a message text, or None when it is acceptable."""
    if not text.strip():
        return "message text is empty"
    size = len(text.encode("utf-8"))
    if size > limit:
        return f"message text is {size} bytes; the limit is {limit} bytes"
    return None
