"""Faults on purpose: does every accepted event get exactly one result, whatever breaks?

    python bench/chaos.py                  # the full run (~10,000 moments, 50 worker kills, ...), one table
    python bench/chaos.py --json           # the same as one JSON object
    python bench/chaos.py --quick          # the test suite's small variant

Starts its own Redis (AOF every second) and PostgreSQL (fsync and synchronous commit on), a relay
process and three worker processes on loopback, then runs one phase per fault (see
insane/devkit/chaos/harness.py for what each does and counts):

    workers   50 SIGKILLs of a random worker, half of them right after the relay stored one of its results
    redis     3 SIGKILLs of Redis, each restarted from its append-only file (fsync every second)
    postgres  PostgreSQL down 10 s: new events must get 503 + Retry-After, never 202
    poison    one event whose image kills every worker that decodes it: N deliveries, one dead letter
    relay     the relay SIGKILLed between results' commits and their acks (Redis's writes paused under
              it), started again on the same port
    disk      the filesystem under PostgreSQL's tables (a 96 MB loop mount) full for 8 s: 503, never 202
    balanced  two relays behind HAProxy: one SIGKILLed under load and started again, then the other

Needs root for the disk phase's loop mount, and HAProxy (Debian's haproxy) for the balanced phase.

Columns: lost = accepted and never done or failed; dup rows = result rows beyond one per event;
dup answers = results the relay answered as duplicates (a second review, or a worker re-posting
after the relay died under its post; never a second row);
re-queued = events the reconciler queued again; dead = dead letters; failed = events failed other
than the poison; 202 unstored = accepted answers for events not in PostgreSQL; 503s = answers that
made a camera retry; cameras retried on = every answer that made one retry, by status ("transport": no
answer came). The model is YOLOv8n (random weights, 320×320: the work is real, the labels
are not the point) on 320×240 JPEGs, one inference thread per worker.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from insane.devkit import models  # noqa: E402
from insane.devkit.chaos.harness import Chaos  # noqa: E402
from insane.devkit.chaos.plan import Plan, table  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--quick", action="store_true", help="the small variant the test suite runs")
    p.add_argument("--model", help="a .onnx file (default: YOLOv8n at 320, built by insane/devkit/models.py)")
    p.add_argument("--workers", type=int, help="worker processes (default 3; --quick 2)")
    p.add_argument("--kills", type=int, help="worker SIGKILLs (default 50)")
    p.add_argument("--rate", type=float, help="events per second the cameras offer (default 6)")
    p.add_argument("--seed", type=int, default=8)
    p.add_argument("--logs", help="keep the processes' logs in this folder (default: a temporary one)")
    args = p.parse_args()
    if args.model:
        model = args.model
    else:
        cache = models.test_cache()
        model = str(models.export_onnx(models.yolov8n_pt(cache), cache, 320))
    overrides = {"seed": args.seed}
    if args.workers:
        overrides["workers"] = args.workers
    if args.kills is not None:
        overrides["worker_kills"] = args.kills
    if args.rate:
        overrides["submit_rate"] = args.rate
    plan = Plan.quick(model, **overrides) if args.quick else Plan.full(model, submit_rate=6.0, **overrides)
    echo = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.json else None
    chaos = Chaos(plan, Path(args.logs) if args.logs else None, echo=echo)
    report = asyncio.run(chaos.run())
    report["date"] = datetime.date.today().isoformat()
    report["moments_submitted"] = plan.total_moments
    t = report["totals"]
    if args.json:
        print(json.dumps(report))
    else:
        print(table(report))
        poison = next((ph for ph in report["phases"] if ph["name"] == "poison"), None)
        print(
            f"\n{t['accepted']} events ({plan.total_moments} moments offered, {t['moments_reviewed']} reviewed, "
            f"{t['moment_errors']} moment errors) in {report['seconds']:.0f} s; "
            f"{plan.workers} workers, lease deadline {plan.lease_idle_s:g} s, max deliveries {plan.max_deliveries}"
        )
        relay = next((ph for ph in report["phases"] if ph["name"] == "relay"), None)
        if relay:
            print(
                f"relay: SIGKILLed with {relay['stored_not_acked']} results stored and not yet acked "
                f"(Redis frozen under it); {relay['re_reviews']} duplicate answers, {relay['lost']} lost"
            )
        if poison:
            print(
                f"poison: delivered {poison['poison_deliveries']} times, event {poison['poison_status']}, "
                f"dead-letter stream holds {len(report['dead_letter_stream'])} entr"
                f"{'y' if len(report['dead_letter_stream']) == 1 else 'ies'}"
            )
        if any(ph["notes"] for ph in report["phases"]):
            print("notes:", "; ".join(n for ph in report["phases"] for n in ph["notes"][:5]))
    return 0 if t["lost"] == 0 and t["duplicate_rows"] == 0 and t["unstored_202"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
