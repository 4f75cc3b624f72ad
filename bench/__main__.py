"""``python -m bench [--quick] [--json] [--only NAME,...] [--rounds N]``: every workload,
agentctl beside its baseline (and peers where installed) in the same run."""

from __future__ import annotations

import argparse
import importlib
import sys

from .harness import machine, report

WORKLOADS = ("messaging", "spawn", "event_log", "tree", "reconcile", "llm_pool", "resume")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: everything in under two minutes")
    parser.add_argument("--json", action="store_true", help="one JSON object per workload")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(WORKLOADS)}")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per workload (default 3, quick 3)")
    args = parser.parse_args(argv)
    chosen = [w for w in args.only.split(",") if w] or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(f"--only: unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    rounds = args.rounds or 3
    if not args.json:
        print("machine:", ", ".join(f"{k}={v}" for k, v in machine().items()))
    figures = []
    for name in chosen:
        module = importlib.import_module(f"bench.{name}")
        figures.extend(module.run(args.quick, rounds))
        if not args.json:
            print(f"  ... {name} done", file=sys.stderr)
    report(figures, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
