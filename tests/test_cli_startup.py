"""Start-up stays cheap: the CLI imports nothing heavy before a command needs it.

The time itself is measured in ``bench/startup.py`` (a ratio against importing typer and
rich, same run); this test checks the cause, which does not depend on the machine's speed.
"""

from __future__ import annotations

import subprocess
import sys

from cli_helpers import AGENTCTL

from agentctl import __version__

#: Libraries a command may need but ``agentctl --help`` and ``--version`` must not import.
HEAVY = ("anyio", "rich", "yaml", "edn_format", "httpx", "httpcore", "watchfiles", "msgspec", "orjson", "mcp", "pydantic")
#: agentctl modules the command table itself needs.
LIGHT = ("agentctl", "agentctl.errors", "agentctl.cli")


def test_importing_the_command_table_loads_no_heavy_module() -> None:
    code = "import sys, agentctl.cli.main; print('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY]
    ours = [m for m in loaded if m.startswith("agentctl.") and m not in LIGHT and not m.startswith("agentctl.cli.")]
    assert heavy == [] and ours == [], "move these imports into the command functions that need them"
    assert "agentctl.cli.session" not in loaded and "agentctl.cli.control" not in loaded


def test_version_from_the_real_entry_point() -> None:
    proc = subprocess.run([AGENTCTL, "--version"], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == f"agentctl {__version__}"
