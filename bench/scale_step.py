"""One workflow step (Split or Merge) in a process of its own, for bench/workflow_scale.py.

    python bench/scale_step.py '{"endpoint": ..., "step": "split"|"merge", ...}'

Prints one JSON line: wall and CPU seconds of the step, its peak RSS (VmHWM of this process,
which ru_maxrss would not give: Linux carries the parent's over fork + exec), the RSS before
the step (Python, boto3, the core), S3 requests by operation and the seconds spent inside
CompleteMultipartUpload (moto concatenates the parts there; S3 does it server-side).
The S3 client is configured as the handlers' (handlers/_aws.py: 32 connections, adaptive retries).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter


def vm_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith(field)).split()[1])


def main() -> None:
    args = json.loads(sys.argv[1])
    import boto3
    from botocore.config import Config

    from lyrics_classifier import workflow

    s3 = boto3.client(
        "s3",
        endpoint_url=args["endpoint"],
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(max_pool_connections=32, retries={"mode": "adaptive", "max_attempts": 8}),
    )
    requests: Counter[str] = Counter()
    seconds: Counter[str] = Counter()
    local = threading.local()
    lock = threading.Lock()

    def before(event_name: str, **_: object) -> None:
        local.started = time.perf_counter()

    def after(event_name: str, **_: object) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with lock:
            requests[operation] += 1
            seconds[operation] += time.perf_counter() - local.started

    s3.meta.events.register("before-call.s3", before)
    s3.meta.events.register("after-call.s3", after)
    s3.list_buckets()  # connection and credentials set up before the clock starts
    requests.clear()
    seconds.clear()

    baseline = vm_kb("VmHWM")
    cpu0, started = os.times(), time.perf_counter()
    if args["step"] == "split":
        result = workflow.split_input(
            s3,
            input_bucket=args["input_bucket"],
            input_key=args["key"],
            version_id=args["version_id"],
            work_bucket=args["work_bucket"],
            run_id=args["run_id"],
            **({"range_bytes": args["range_bytes"]} if args.get("range_bytes") else {}),
        )
    else:
        result = workflow.merge_results(s3, bucket=args["work_bucket"], run_id=args["run_id"])
    wall = time.perf_counter() - started
    cpu1 = os.times()
    print(json.dumps({
        "seconds": wall,
        "cpu_seconds": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
        "baseline_kb": baseline,
        "peak_kb": vm_kb("VmHWM"),
        "requests": dict(requests),
        "request_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "result": result,
    }))


if __name__ == "__main__":
    main()
