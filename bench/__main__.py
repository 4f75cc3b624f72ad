"""``python -m bench [--quick] [--json] [--only NAME,...] [--rounds N]``: every workload,
agentctl beside its baseline (and peers where installed) in the same run."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from .harness import machine, report

WORKLOADS = ("one_way", "ping_pong", "flood", "spawn", "event_log", "tree", "reconcile", "live_view", "llm_pool", "llm_stream", "resume",
             "startup", "ray_executor", "otel", "ps")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: everything in under two minutes")
    parser.add_argument("--json", action="store_true", help="one JSON object per workload")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(WORKLOADS)}")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per workload (default 3)")
    args = parser.parse_args(argv)
    chosen = [w for w in args.only.split(",") if w] or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(f"--only: unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    # With --json stdout carries only the figures, one object per line.
    print("machine:", ", ".join(f"{k}={v}" for k, v in machine().items()), file=sys.stderr if args.json else sys.stdout)
    figures = []
    for name in chosen:
        start = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        figures.extend(module.run(args.quick, args.rounds))
        print(f"  ... {name} done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    report(figures, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
