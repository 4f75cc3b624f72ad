"""The private Docker engine of the container tests (``-m docker`` and ``-m ray_docker``).

:func:`engine` is the body of the session fixture ``engine`` (in ``conftest.py``): it runs
``scripts/docker-engine.sh`` with its own data-root and socket in a temp dir (installing
docker.io/busybox-static with apt when missing, so it needs root), which builds the local
image ``agentctl-test/busybox``, points ``DOCKER_HOST`` at it and stops it afterwards. Where
no engine can be started the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from cli_helpers import ROOT, running

IMAGE = "agentctl-test/busybox"


def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """A private dockerd for this session; its DOCKER_HOST. Skips when none can be started."""
    # The main suite must never start an engine, even before its default ``-m`` deselects us.
    if "docker" not in (request.config.getoption("markexpr", "") or "") and not os.environ.get("AGENTCTL_DOCKER_TESTS"):
        pytest.skip("docker tests run with: pytest -m docker (or -m ray_docker)")
    if os.geteuid() != 0:
        pytest.skip("docker tests start their own dockerd, which needs root")
    if shutil.which("dockerd") is None and shutil.which("apt-get") is None:
        pytest.skip("no dockerd and no apt-get to install docker.io")
    # Short path: a unix socket path must stay under ~108 bytes.
    home = Path(_tempdir()) / f"agentctl-dk-{os.getpid()}"
    env = {**os.environ, "AGENTCTL_DOCKER_DIR": str(home)}
    proc = subprocess.run([str(ROOT / "scripts" / "docker-engine.sh")], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        pytest.skip(f"could not start a docker engine: {proc.stderr.strip()[-500:]}")
    host = f"unix://{home}/docker.sock"
    mp = pytest.MonkeyPatch()
    mp.setenv("DOCKER_HOST", host)
    try:
        yield host
    finally:
        mp.undo()
        _stop_engine(home)


def _tempdir() -> str:
    return "/tmp" if os.path.isdir("/tmp") else os.environ.get("TMPDIR", ".")


def _stop_engine(home: Path) -> None:
    pidfile = home / "dockerd.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text().strip())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(200):
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["umount", "-R", str(home)], capture_output=True, check=False)
    shutil.rmtree(home, ignore_errors=True)


def sh(*args: str) -> str:
    """``docker ARGS`` stdout (the engine from ``DOCKER_HOST``)."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True, timeout=60).stdout


def containers_of(run_id: str) -> list[str]:
    """The ids of the containers labelled as ``run_id``'s, running or not."""
    return sh("ps", "-aq", "--filter", f"label=agentctl.run={run_id}").split()


def killed_at_first_result(run_dir: Path, *args: str, cwd: Path, env: Mapping[str, str] | None = None) -> None:
    """``agentctl run ARGS --run-dir RUN_DIR``, SIGKILLed from outside once its first ``tool/result`` is on disk.

    From outside, not by the in-process fault hook: that fires before its event is
    committed, and a ``docker/run`` lost with its result would be an unresolved
    interruption, not what these tests are about.
    """
    log = run_dir / "events.jsonl"
    with running("run", *args, "--run-dir", str(run_dir), cwd=cwd, **({"env": dict(env)} if env else {})) as proc:
        deadline = time.monotonic() + 120
        while not (log.exists() and b'"type":"tool/result"' in log.read_bytes()):
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its tool/result"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
