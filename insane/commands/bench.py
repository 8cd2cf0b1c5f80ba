"""``insane bench``: this machine's detector figures, for a user deciding on threads, batch or INT8.

The same measurement as ``insane model bench``; the project's own comparisons against baselines
(Ultralytics, raw inference, a bare HTTP server) are the scripts in ``bench/`` of the source tree.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from insane.commands.model import add_bench_arguments, bench_command

    p = sub.add_parser(
        "bench",
        help="measure this machine: the model alone and the full JPEG-to-boxes path, in images/s",
        description="Load the model (INSANE_MODEL or --model) as the worker would and measure, on this "
        "machine, images/s of the model alone and of the whole path from JPEG bytes to boxes. With "
        "--against MODEL two models are measured in alternating rounds and their median ratio printed.",
    )
    add_bench_arguments(p)
    p.set_defaults(func=bench_command)
