"""How fast one WebSocket may send frames: a token bucket per connection, in memory.

The WebSocket layer reads a client's next frame only once the service asked for it (uvicorn
pauses reading while a received frame waits), so a client over its budget is simply not read:
TCP pushes back on it, and neither its frames nor the replies to them pile up in the service.
Hand-rolled because it is a dozen lines that need no shared state (the Redis buckets in
``llmchat.ratelimit`` limit what is stored; this limits what one socket makes the process do).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class FrameBudget:
    """``burst`` frames at once, then ``per_second`` (``per_second == 0``: no limit)."""

    def __init__(
        self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_second < 0 or burst < 1:
            raise ValueError("per_second must be >= 0 and burst >= 1")
        self.per_second = per_second
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()
        self.waited = 0.0  # seconds spent waiting for the budget (for tests and logs)

    def wait_time(self) -> float:
        """Seconds until a frame may be read (0 when one may be read now); takes it if so."""
        if self.per_second == 0:
            return 0.0
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.per_second

    async def take(self) -> None:
        """Wait until the next frame is within the budget, and take it."""
        while (wait := self.wait_time()) > 0:
            self.waited += wait
            await asyncio.sleep(wait)
