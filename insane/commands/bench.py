"""``insane bench``: this machine's detector figures, for a user deciding on threads, batch or INT8.

The same measurement as ``insane model bench``; with ``--jobs N``, N deep reviews end to end through a
throwaway relay to one worker process, at a steady arrival rate and then at a surge (insane/loadtest.py).
The project's own comparisons against baselines (Ultralytics, raw inference, a bare HTTP server) are the
scripts in ``bench/`` of the source tree.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from insane.commands.model import add_bench_arguments

    p = sub.add_parser(
        "bench",
        help="measure this machine: the model alone and the full JPEG-to-boxes path, in images/s",
        description="Load the model (INSANE_MODEL or --model) as the worker would and measure, on this "
        "machine, images/s of the model alone and of the whole path from JPEG bytes to boxes. With "
        "--against MODEL two models are measured in alternating rounds and their median ratio printed.",
    )
    add_bench_arguments(p)
    jobs = p.add_argument_group("end to end (--jobs)")
    jobs.add_argument("--jobs", type=int, metavar="N", help="N deep reviews through a throwaway relay to one worker")
    jobs.add_argument("--moments", type=int, default=20, metavar="M", help="moments per deep review (default 20)")
    jobs.add_argument("--rate", type=float, default=0.75, help="events arriving per second (default 0.75)")
    jobs.add_argument(
        "--surge", type=float, nargs="+", default=[1.0, 3.0], help="one run per arrival multiplier (default 1 3)"
    )
    jobs.add_argument(
        "--drain-target",
        type=float,
        default=10.0,
        metavar="S",
        help="INSANE_WORKER_DRAIN_TARGET_S for the worker (default 10: fifty events never build the production "
        "default's 60 s of backlog, so K would never move)",
    )
    jobs.add_argument("--threads", type=int, help="the worker's inference threads (default: all cores)")
    jobs.add_argument("--json", action="store_true", help="one JSON object with every run")
    p.set_defaults(func=bench_dispatch)


def bench_dispatch(args: argparse.Namespace, settings) -> int:
    from insane.commands.model import bench_command

    if args.jobs is None:
        return bench_command(args, settings)
    return jobs_command(args, settings)


def jobs_command(args: argparse.Namespace, settings) -> int:
    import json
    import sys

    from core.detect import DetectorError
    from core.detect.registry import ModelRegistry
    from insane.demo_media import DemoError
    from insane.devkit.loadtest import LoadTestError, jobs_bench, summary_lines
    from insane.devkit.services import ServiceError

    if not 1 <= args.jobs <= 1000 or not 1 <= args.moments <= settings.max_moments or args.rate <= 0:
        print(
            f"insane bench: --jobs takes 1 to 1000, --moments 1 to {settings.max_moments}, --rate above 0",
            file=sys.stderr,
        )
        return 2
    try:
        model = ModelRegistry(settings.model_dir).resolve(args.model or settings.model, "onnx")
        runs = jobs_bench(
            settings,
            model,
            jobs=args.jobs,
            moments=args.moments,
            rate=args.rate,
            surges=tuple(args.surge),
            threads=args.threads,
            drain_target_s=args.drain_target,
            photos=list(args.images) or None,
        )
    except (DetectorError, DemoError, LoadTestError, ServiceError) as exc:
        print(f"insane bench: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"runs": runs}))
    else:
        for run in runs:
            print("\n".join(summary_lines(run)))
    return 0
