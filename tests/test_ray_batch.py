"""``agentctl batch --ray`` on a real two-node Ray cluster on 127.0.0.1 (``pytest -m ray``):
20 plans run as Ray tasks come to the same outcomes as the same 20 run on this machine."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import AGENTCTL
from ray_cluster import LOOPBACK, TwoNodes, two_nodes

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def cluster() -> Iterator[TwoNodes]:
    yield from two_nodes()


def twenty_plans(tmp_path: Path) -> list[str]:
    """20 plans; every fifth fails its task, the rest write a file and succeed."""
    names = []
    for i in range(1, 21):
        last = f"      - fail: 'plan {i} fails'\n" if i % 5 == 0 else "      - done: ok\n"
        (tmp_path / f"p{i:02d}.yaml").write_text(
            f"name: p{i}\ntasks:\n  - id: a\n    agent: script\n    restart: temporary\n    steps:\n"
            f"      - write: {{path: out/p.txt, content: '{i}'}}\n{last}")
        names.append(f"p{i:02d}.yaml")
    return names


def batch(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([AGENTCTL, "batch", *args, "-o", "json"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=400, env={**os.environ, **LOOPBACK})
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_twenty_plans_on_the_cluster_and_here_come_to_the_same_outcomes(cluster: TwoNodes, tmp_path: Path) -> None:
    plans = twenty_plans(tmp_path)
    code_here, here = batch(tmp_path, *plans, "--parallel", "2")
    code_ray, on_ray = batch(tmp_path, *plans, "--ray", cluster.address, "--parallel", "4")
    assert code_here == code_ray == 1  # four plans fail, on both

    def outcomes(out: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(r["name"], r["status"], r["exit_code"], r["failures"], r["tool_calls"], r["error"]) for r in out["runs"]]

    assert outcomes(on_ray) == outcomes(here)
    assert [r["status"] for r in here["runs"]].count("failed") == 4
    assert {r["node"] for r in here["runs"]} == {None}
    assert {r["node"] for r in on_ray["runs"]} == {cluster.head, cluster.worker}  # both nodes took runs
    # Every run of the cluster batch has its own complete log and workspace.
    for r in on_ray["runs"]:
        assert (Path(r["run_dir"]) / "events.jsonl").read_text().rstrip().endswith("}")
    assert len({r["run_dir"] for r in on_ray["runs"] + here["runs"]}) == 40
