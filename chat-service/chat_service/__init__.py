"""chat-service: rooms over WebSocket and REST, backed by Redis streams."""
