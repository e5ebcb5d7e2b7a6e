"""`make bench` (part 5): load on the local stack (`lyrics-classifier serve`).

Two scenarios, each in a fresh process with its own stack:

    burst   50 uploads at once, no cap on Classify
    capped  50 uploads at once against a Classify concurrency cap of 2 (like a small reserved
            concurrency): invocations beyond it are throttled (HTTP 429) and the state
            machine's retry (Lambda.TooManyRequestsException, jittered backoff) brings them back

Every upload is a 40-lyric CSV cut from the samples. A run counts as complete when its
execution SUCCEEDED and its summary accounts for all 40 rows.

    python bench/load.py [--uploads 50] [--cap 2]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROWS_PER_UPLOAD = 40


def upload_bytes(index: int) -> bytes:
    with open(REPO / "samples" / "multilingual.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    start = (index * ROWS_PER_UPLOAD) % (len(rows) - ROWS_PER_UPLOAD)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "lyrics"])
    writer.writerows([r["id"], r["lyrics"]] for r in rows[start : start + ROWS_PER_UPLOAD])
    return buffer.getvalue().encode("utf-8")


def scenario(uploads: int, cap: int | None, timeout: float) -> dict:
    """One stack in this process: upload everything at once, wait for every execution."""
    import boto3

    from lyrics_classifier.serve import INPUT_BUCKET, OUTPUT_BUCKET, start_stack

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stack = start_stack(port=port, model_dir=REPO / "models" / "default", classify_concurrency=cap)
    with stack:
        s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=uploads) as pool:
            list(pool.map(lambda i: s3.put_object(Bucket=INPUT_BUCKET, Key=f"{i:03d}.csv",
                                                  Body=upload_bytes(i)), range(uploads)))
        statuses: dict[str, str] = {}
        while time.perf_counter() - started < timeout:
            statuses = {arn: sfn.describe_execution(executionArn=arn)["status"] for arn in list(stack.executions)}
            if len(statuses) == uploads and "RUNNING" not in statuses.values():
                break
            time.sleep(1)
        wall = time.perf_counter() - started
        rows = complete = 0
        for i in range(uploads):
            try:
                summary = json.loads(s3.get_object(Bucket=OUTPUT_BUCKET, Key=f"results/{i:03d}.summary.json")["Body"].read())
            except s3.exceptions.NoSuchKey:
                continue
            rows += summary["rows_in"]
            complete += summary["rows_in"] == summary["rows_classified"] + summary["rows_rejected"] == ROWS_PER_UPLOAD
        return {
            "uploads": uploads,
            "cap": cap,
            "executions": len(statuses),
            "succeeded": sum(s == "SUCCEEDED" for s in statuses.values()),
            "failed": sum(s not in ("SUCCEEDED", "RUNNING") for s in statuses.values()),
            "still_running": sum(s == "RUNNING" for s in statuses.values()),
            "complete_runs": complete,
            "rows": rows,
            "rows_expected": uploads * ROWS_PER_UPLOAD,
            "wall_s": round(wall, 1),
            "throttled_then_retried": stack.progress.throttled,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--cap", type=int, default=2, help="Classify concurrency cap of the capped scenario")
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--one", choices=("burst", "capped"), help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        cap = args.cap if args.one == "capped" else None
        print(json.dumps(scenario(args.uploads, cap, args.timeout)))
        return 0
    results = {}
    for name in ("burst", "capped"):
        done = subprocess.run([sys.executable, __file__, "--one", name, "--uploads", str(args.uploads),
                               "--cap", str(args.cap), "--timeout", str(args.timeout)],
                              capture_output=True, text=True, cwd=REPO)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"# Load on the local stack ({args.uploads} uploads of {ROWS_PER_UPLOAD} lyrics at once)\n")
    print("| scenario | executions | succeeded | failed | complete runs | rows (expected) | wall s | "
          "Classify throttled, retried |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        label = "no cap" if r["cap"] is None else f"Classify capped at {r['cap']}"
        print(f"| {name}: {label} | {r['executions']} | {r['succeeded']} | {r['failed']} | {r['complete_runs']} | "
              f"{r['rows']:,} ({r['rows_expected']:,}) | {r['wall_s']} | {r['throttled_then_retried']} |")
    ok = all(r["complete_runs"] == r["uploads"] and r["failed"] == 0 for r in results.values())
    print("\nevery run completed, every row accounted for" if ok else "\nSOME RUNS DID NOT COMPLETE")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
