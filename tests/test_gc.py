"""``agentctl gc`` and what a resume says about the containers it leaves on a Ray cluster: the
parts that need neither an engine nor a cluster (in this process). Removal itself, in an
engine and on a cluster's nodes: ``-m docker`` (test_docker_tools.py), ``-m ray_docker``
(test_ray_docker.py)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import orjson
import pytest
from cli_helpers import invoke

from agentctl.cli.clusters import left_on_clusters, ran_here
from agentctl.events.fold import fold

T0 = 1_700_000_000_000
A, B = "10.0.0.1:6379", "ray://b.example:10001"


def process(seq: int, executor: str, address: str | None = None) -> dict[str, Any]:
    """The event of a process of run ``r-1`` that ran its tools on ``executor`` (at ``address``)."""
    return {"seq": seq, "t": T0 + seq, "run_id": "r-1", "type": "run/resumed" if seq > 1 else "run/started",
            "pid": 1000 + seq, "control": "c.sock", "executor": executor, "address": address}


def stopped(seq: int) -> dict[str, Any]:
    return {"seq": seq, "t": T0 + seq, "run_id": "r-1", "type": "run/finished", "reason": "stopped",
            "status": "failed", "events": seq}


def line(address: str, where: str = "here") -> str:
    cluster = f"the Ray cluster at {address!r}" if address else "a Ray cluster its log does not name"
    return (f"run r-1 ran container tools on {cluster}, where its process died; this resume runs its tools {where} "
            "and does not remove what that process left on the cluster's nodes: "
            f"agentctl gc --run-id r-1 --ray {shlex.quote(address) if address else 'ADDRESS'}")


@pytest.mark.parametrize(("log", "now", "expected"), [
    # Killed on A, resumed here: A's nodes are left, and the line says how to clean them.
    ([process(1, "ray", A)], None, [line(A)]),
    # Resumed on A again: that resume removes them itself (from the nodes its log names).
    ([process(1, "ray", A)], A, []),
    # Resumed on B: A is left, named; B is not.
    ([process(1, "ray", A)], B, [line(A, f"on the Ray cluster at {B!r}")]),
    # Stopped on A (its end removed the run's containers there), resumed here: nothing to say.
    ([process(1, "ray", A), stopped(2)], None, []),
    # Killed on A, then on B, then stopped here: both are left, in the order the run used them.
    ([process(1, "ray", A), process(2, "ray", B), process(3, "local"), stopped(4)], None, [line(A), line(B)]),
    # A private cluster was this machine: the local resume's own clean-up covers it.
    ([process(1, "ray", "local")], None, []),
    # A log that does not name its cluster: the command has the address left to fill in.
    ([process(1, "ray")], None, [line("")]),
    # An address that would be a shell command if pasted as it stands is quoted.
    ([process(1, "ray", "h:1;rm -rf ~")], None, [line("h:1;rm -rf ~")]),
])
def test_a_resume_names_each_cluster_its_killed_processes_left_containers_on(
    log: list[dict[str, Any]], now: str | None, expected: list[str],
) -> None:
    assert left_on_clusters(fold(log), now) == expected


def test_the_quoted_command_is_one_address_argument() -> None:
    (warned,) = left_on_clusters(fold([process(1, "ray", "h:1;rm -rf ~")]), None)
    assert shlex.split(warned.rsplit(": ", 1)[1])[-2:] == ["--ray", "h:1;rm -rf ~"]


@pytest.mark.parametrize(("log", "here"), [
    ([process(1, "ray", A)], False),
    ([process(1, "ray", A), process(2, "local")], True),
    ([process(1, "ray", "local")], True),  # a private cluster's one node is this machine
    ([{**process(1, "ray"), "executor": None}], True),  # an older log that does not say: this machine
])
def test_this_machines_engine_is_cleaned_where_a_process_ran_its_tools_here(log: list[dict[str, Any]], here: bool) -> None:
    assert ran_here(fold(log)) is here


def run_dir(tmp_path: Path, *log: dict[str, Any]) -> Path:
    d = tmp_path / "run"
    d.mkdir()
    (d / "events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in log))
    return d


@pytest.mark.parametrize(("args", "error"), [
    (["--ray", "local", "--run-id", "r-1"],
     "--ray: local would start a new private cluster, which holds nothing of any run; expected auto, HOST:PORT or "
     "ray://HOST:PORT"),
    (["--ray", "no port", "--run-id", "r-1"], "--ray: expected auto, HOST:PORT or ray://HOST:PORT, got 'no port'"),
    (["--ray", A], "give exactly one of --run RUN_DIR, --run-id ID or --all"),
    (["--ray", A, "--run-id", "r-1", "--all"], "give exactly one of --run RUN_DIR, --run-id ID or --all"),
])
def test_bad_gc_flags_are_one_line_and_exit_2(tmp_path: Path, args: list[str], error: str) -> None:
    got = invoke("gc", *args, cwd=tmp_path)
    assert (got.returncode, got.stdout, got.stderr) == (2, "", f"error: {error}\n")


@pytest.mark.parametrize(("log", "error"), [
    ([process(1, "ray")], "--run: run r-1 ran its tools on a Ray cluster its log does not name; give its address: "
                          "agentctl gc --run-id r-1 --ray ADDRESS"),
    ([process(1, "ray", "h 1")], "--run: the Ray cluster run r-1 recorded: expected auto, HOST:PORT or ray://HOST:PORT, "
                                 "got 'h 1'"),
])
def test_gc_of_a_run_dir_whose_log_cannot_name_a_usable_cluster_says_so(
    tmp_path: Path, log: list[dict[str, Any]], error: str,
) -> None:
    got = invoke("gc", "--run", str(run_dir(tmp_path, *log)), cwd=tmp_path)
    assert (got.returncode, got.stdout, got.stderr) == (2, "", f"error: {error}\n")


def test_gc_of_a_run_that_used_a_private_cluster_goes_to_this_machines_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not to a cluster: a private one died with its run. No engine answers here, and gc says so."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    got = invoke("gc", "--run", str(run_dir(tmp_path, process(1, "ray", "local"))), cwd=tmp_path)
    assert got.returncode == 2 and got.stdout == ""
    assert got.stderr.startswith("error: ") and got.stderr.count("\n") == 1 and "docker" in got.stderr
