"""`crdgate bench` / `python -m bench`: flags -> Settings -> one run -> table, JSON, PNG.

``main(argv)`` returns 0 when every selected scenario ran without failing
(skipped ones, with the reason printed, do not count), 1 when one failed, 2 on
bad flags. The lead's CLI calls ``bench.__main__.main(argv)`` for `crdgate bench`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from .gateway import DEFAULT_COMMAND
from .progress import Progress
from .settings import SCENARIOS, Settings

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def duration(text: str) -> float:
    """'5', '5s', '500ms', '1m' -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 5s, 500ms, 1m)")
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]


def scenario_list(values: list[str] | None) -> tuple[str, ...]:
    if not values:
        return SCENARIOS
    chosen: list[str] = []
    for value in values:
        for name in value.split(","):
            name = name.strip()
            if not name:
                continue
            if name == "all":
                chosen.extend(SCENARIOS)
            elif name not in SCENARIOS:
                raise argparse.ArgumentTypeError(f"unknown scenario {name!r}; choose from: {', '.join(SCENARIOS)}, all")
            else:
                chosen.append(name)
    return tuple(n for n in SCENARIOS if n in chosen)  # always the same order, so reports line up


def parser() -> argparse.ArgumentParser:
    d = Settings()
    p = argparse.ArgumentParser(
        prog="crdgate bench",
        description="Load benchmark: crdgate vs nginx (1-worker reverse proxy) vs the backend directly, with wrk. "
                    "Installs nothing; says what is missing and skips only what needs it.",
    )
    p.add_argument("--scenario", action="append", metavar="NAME[,NAME]",
                   help=f"scenarios to run (repeatable, comma-separated): {', '.join(SCENARIOS)}; default: all")
    p.add_argument("--duration", type=duration, default=d.duration_s,
                   help="one measured run (default 3s; wrk rounds up to whole seconds)")
    p.add_argument("--runs", type=int, default=d.runs, help="measured runs per configuration (default 5; p99-fixed plays twice as many rounds)")
    p.add_argument("--warmup", type=duration, default=d.warmup_s, help="warm-up before the runs (default 1s; 0 = none)")
    p.add_argument("--connections", type=int, default=d.connections, help="wrk connections (default 64)")
    p.add_argument("--threads", type=int, default=d.threads, help="wrk threads (default 1)")
    p.add_argument("--routes", type=int, default=d.routes,
                   help="routes in the many-routes table and top of the propagation/lookup ladder (default 10000)")
    p.add_argument("--churn-rate", type=float, default=d.churn_rate,
                   help="manifest changes per second in churn (default 50)")
    p.add_argument("--propagation-samples", type=int, default=d.propagation_samples,
                   help="changes timed per table size (default 20)")
    p.add_argument("--lookup-iterations", type=int, default=d.lookup_iterations,
                   help="lookups per timing in the microbenchmark")
    p.add_argument("--gateway-command", default=DEFAULT_COMMAND, help="how to start crdgate (default: %(default)s)")
    p.add_argument("--ready-timeout", type=duration, default=d.ready_timeout_s, help="wait for /readyz (default 120s)")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs with taskset")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON (schema crdgate-bench/1)")
    p.add_argument("--plot", metavar="PATH", help="write a PNG chart (matplotlib)")
    p.add_argument("--keep-workdir", action="store_true", help="keep manifests, logs and wrk scripts for inspection")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    p = parser()
    try:
        args = p.parse_args(args_list)
        scenarios = scenario_list(args.scenario)
    except argparse.ArgumentTypeError as exc:
        p.print_usage(sys.stderr)
        print(f"crdgate bench: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse's own errors and --help
        return int(exc.code or 0)
    minimums = (("--runs", args.runs), ("--connections", args.connections), ("--threads", args.threads),
                ("--routes", args.routes), ("--propagation-samples", args.propagation_samples))
    for name, value in minimums:
        if value < 1:
            print(f"crdgate bench: error: {name} must be at least 1", file=sys.stderr)
            return 2
    if args.churn_rate <= 0 or args.duration <= 0:
        print("crdgate bench: error: --churn-rate and --duration must be positive", file=sys.stderr)
        return 2
    settings = Settings(
        scenarios=scenarios, duration_s=args.duration, runs=args.runs, warmup_s=args.warmup,
        connections=args.connections, threads=args.threads, routes=args.routes, churn_rate=args.churn_rate,
        propagation_samples=args.propagation_samples, lookup_iterations=args.lookup_iterations,
        gateway_command=args.gateway_command, ready_timeout_s=args.ready_timeout, pin=not args.no_pin,
    )
    from .report import plot, table
    from .run import run

    doc = run(settings, Progress(quiet=args.quiet), ["crdgate", "bench", *args_list], keep_workdir=args.keep_workdir)
    print(table(doc))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    if args.plot and not plot(doc, args.plot):
        print(f"crdgate bench: no chart written to {args.plot}: nothing was measured", file=sys.stderr)
    failed = [r for r in [*doc["baselines"].values(), *doc["scenarios"]] if r["state"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
