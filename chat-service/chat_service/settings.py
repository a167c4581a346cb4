"""chat-service settings: ``LLMCHAT_`` environment variables, validated at start-up."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from llmchat.auth import MIN_ADMIN_CHARS, MIN_SECRET_CHARS
from llmchat.ratelimit import Limit
from llmchat.settings import ComponentSettings


class ChatServiceSettings(ComponentSettings):
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port to listen on.")
    replica_id: str = Field(default="", description="Name of this replica (default: host:port).")
    max_message_bytes: int = Field(
        default=8192, ge=64, le=1_048_576, description="Largest message text, in UTF-8 bytes."
    )
    history_on_join: int = Field(
        default=100, ge=0, le=10_000, description="Entries sent to a client that gives no cursor."
    )
    page_limit: int = Field(default=500, ge=1, le=10_000, description="Largest history page.")
    client_queue: int = Field(
        default=2000,
        ge=10,
        le=1_000_000,
        description="Entries buffered per WebSocket before a slow client is disconnected.",
    )
    max_model_streak: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Model replies in a row (models @mentioning models) before a person speaks.",
    )

    gc_freeze: bool = Field(
        default=True,
        description="Freeze objects that survive a full garbage collection, so that later ones "
        "skip the long-lived connections' objects (short pauses with thousands of clients; see "
        "chat_service/gc_policy.py).",
    )
    ws_impl: Literal["websockets", "websockets-sansio", "wsproto"] = Field(
        default="websockets-sansio",
        description="uvicorn's WebSocket implementation. websockets-sansio: ~50 KiB per "
        "connection instead of ~58 and 0.77-0.79 of the baseline's saturated fan-out instead of "
        "0.68-0.79 for the legacy 'websockets' one (llmchat bench fanout, side by side).",
    )
    ws_compression: bool = Field(
        default=False,
        description="Offer permessage-deflate on WebSockets. Off: a compressed frame can inflate "
        "hundreds of times in the service (many such frames arrive in one read), which bounds "
        "neither memory nor CPU per connection; chat frames are small anyway.",
    )
    ws_frames_per_second: float = Field(
        default=50,
        ge=0,
        le=100_000,
        description="Frames one WebSocket may send per second, after a burst (0: no limit). "
        "A client over it is not read until it is within it again (TCP pushes back).",
    )
    ws_frame_burst: int = Field(default=200, ge=1, le=1_000_000, description="... at once.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Addresses or networks (comma-separated, e.g. 10.0.0.0/8) of the HTTP "
        "proxies in front of the service (an Ingress controller): only requests from these take "
        "their client address from X-Forwarded-For. Empty (the default): no header is trusted, "
        "the address is the socket's.",
    )
    proxy_socket: Path | None = Field(
        default=None,
        description="A Unix socket (mode 0600) on which connections begin with a PROXY protocol "
        "v1 line naming the client: how `llmchat up`'s balancer passes the real address.",
    )
    header_timeout_s: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="A request head not complete this many seconds after it began (or after the "
        "connection opened) gets 408 and the connection closes (0: no limit).",
    )
    max_header_bytes: int = Field(
        default=16_384,
        ge=1024,
        le=1_048_576,
        description="Largest request head (request line and headers); bigger gets 400.",
    )
    max_connections: int = Field(
        default=16_384,
        ge=0,
        le=1_000_000,
        description="Open connections (WebSockets included) the process accepts; more get 503 "
        "at once (0: no limit).",
    )
    api_docs: bool = Field(
        default=False,
        description="Serve Swagger UI at /docs (it loads from a CDN, under a policy that allows "
        "exactly its two files). Off by default; /openapi.json is always served.",
    )
    token_secret: SecretStr = Field(
        description=f"Key that signs user tokens (at least {MIN_SECRET_CHARS} characters; the "
        "same on every replica). From the environment or a Kubernetes Secret.",
    )
    admin_token: SecretStr | None = Field(
        default=None,
        description=f"The admin credential (at least {MIN_ADMIN_CHARS} characters); unset: "
        "admin operations (creating rooms, issuing tokens) are refused.",
    )
    open_signup: bool = Field(
        default=True, description="Anyone may take a free name and get a token (the web page)."
    )
    token_ttl_seconds: int = Field(
        default=12 * 3600, ge=60, le=30 * 86400, description="How long a user token is valid."
    )
    max_session_seconds: int = Field(
        default=30 * 86400,
        ge=60,
        le=366 * 86400,
        description="The longest a sign-in lasts, however often its token is refreshed; then a "
        "new token is needed (sign-up, or the admin).",
    )
    ws_auth_recheck_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How often an open WebSocket re-checks its user (signed out, deleted, "
        "removed from the room); posts are checked every time. At the token's expiry the "
        "socket closes (4401) unless a fresh token came in band.",
    )
    user_messages_per_minute: float = Field(
        default=30, ge=0, le=1_000_000, description="Messages one person may send (0: no limit)."
    )
    user_burst: int = Field(default=10, ge=1, le=1_000_000, description="... at once.")
    room_messages_per_minute: float = Field(
        default=600, ge=0, le=10_000_000, description="Messages a whole room accepts (0: no limit)."
    )
    room_burst: int = Field(default=100, ge=1, le=10_000_000, description="... at once.")
    signups_per_minute: float = Field(
        default=10, ge=0, le=1_000_000, description="Sign-ups from one address (0: no limit)."
    )
    signup_burst: int = Field(default=5, ge=1, le=1_000_000, description="... at once.")
    max_connections_per_user: int = Field(
        default=10, ge=0, le=1_000_000, description="Open WebSockets per person (0: no limit)."
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        return (
            [p.strip() for p in value.split(",") if p.strip()] if isinstance(value, str) else value
        )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError as exc:
                raise ValueError(
                    f"trusted_proxies: {item!r} is not an IP address or network"
                ) from exc
        return out

    @field_validator("token_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"token_secret must be at least {MIN_SECRET_CHARS} characters")
        return value

    @field_validator("admin_token")
    @classmethod
    def _admin(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            return None
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_CHARS:
            raise ValueError(f"admin_token must be at least {MIN_ADMIN_CHARS} characters")
        return value

    @model_validator(mode="after")
    def _session_covers_a_token(self) -> ChatServiceSettings:
        if self.max_session_seconds < self.token_ttl_seconds:
            raise ValueError(
                f"max_session_seconds ({self.max_session_seconds}) must be at least "
                f"token_ttl_seconds ({self.token_ttl_seconds})"
            )
        return self

    @property
    def user_limit(self) -> Limit:
        return Limit(self.user_messages_per_minute, self.user_burst)

    @property
    def room_limit(self) -> Limit:
        return Limit(self.room_messages_per_minute, self.room_burst)

    @property
    def signup_limit(self) -> Limit:
        return Limit(self.signups_per_minute, self.signup_burst)

    @property
    def ws_max_frame_bytes(self) -> int:
        """Frames above this close the socket (1009); smaller oversize texts get an error frame.

        The largest valid message, JSON-escaped at worst (``\\u00XX``: 6 bytes for a byte), plus
        4 KiB for the frame around it: no valid post is cut off, and nothing much bigger is read.
        """
        return self.max_message_bytes * 6 + 4096

    @property
    def max_body_bytes(self) -> int:
        """REST bodies above this are refused (413) before they are read (see above)."""
        return self.ws_max_frame_bytes
