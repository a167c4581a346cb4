"""chat-service settings: ``LLMCHAT_`` environment variables, validated at start-up."""

from __future__ import annotations

from pydantic import Field

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

    @property
    def ws_max_frame_bytes(self) -> int:
        """Frames above this close the socket (1009); smaller oversize texts get an error frame."""
        return max(1_048_576, self.max_message_bytes * 16)

    @property
    def max_body_bytes(self) -> int:
        """REST bodies above this are refused before they are read."""
        return self.max_message_bytes * 4 + 4096
