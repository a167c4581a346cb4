"""Network safety for tests: every address a test sends packets to must be local."""

from __future__ import annotations

import functools
import shutil
import subprocess


@functools.cache
def require_local(address: str = "127.0.0.1") -> str:
    """``address``, once ``ip route get`` has shown that it is routed to this host (the ``local``
    table, device ``lo``); otherwise stop the test with a clear message before any packet is
    sent."""
    ip = shutil.which("ip")
    if ip is None:
        raise RuntimeError(
            "the 'ip' command is missing: cannot check that test traffic stays local"
        )
    out = subprocess.run(
        [ip, "route", "get", address], capture_output=True, text=True, check=False, timeout=10
    )
    route = out.stdout.strip()
    if out.returncode != 0 or not route.startswith("local ") or " dev lo " not in f"{route} ":
        raise RuntimeError(
            f"refusing to send test traffic to {address}: it is not routed to this host "
            f"({route or out.stderr.strip()})"
        )
    return address
