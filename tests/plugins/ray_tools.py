"""A plugin tool for the Ray executor tests: remote, idempotent, and its first attempt kills its worker."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any


def register(registry: Any) -> None:
    @registry.tool("test/flaky", remote=True, idempotent=True)
    def flaky(dir: str) -> dict[str, Any]:
        """Kill the worker running it the first time; return the attempt number the second."""
        first = Path(dir) / "flaky-attempt-1"
        if not first.exists():
            first.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return {"attempt": 2, "first_worker": int(first.read_text()), "worker": os.getpid()}
