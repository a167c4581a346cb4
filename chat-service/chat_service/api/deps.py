"""Dependencies of the routes, and nothing else: the service state, who is calling, as whom.

The checks behind them (tokens, room access) are in ``access``; the rules of a room in
``llmchat.rooms``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from chat_service.state import ServiceState
from llmchat.auth import Identity

from .access import SIGN_IN_HINT, authenticate
from .errors import ApiError


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]
RoomPath = Annotated[str, Path(description="Room name.", max_length=63)]

_bearer = HTTPBearer(auto_error=False, description="A user token, or the admin credential.")


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
