"""Workflow scale benchmark (`make bench`).

1. Split and Merge memory: 20,000 and 200,000 rows through Split and Merge, each step in a
   process of its own against a moto S3 server in another process, so the peak RSS printed
   is the step's own. Bounded memory means the two peaks are close while the files differ 10x.
2. End-to-end local runs (`lyrics-classifier run`): the sample lyrics and a 10,000-row
   corpus of realistic song lengths: lyrics/s and where the time went.

Usage: python bench/workflow_scale.py [--rows 200000] [--e2e-rows 10000] [--skip-e2e]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

STEP = r"""
import json, sys, time, boto3
from lyrics_classifier import workflow
def peak_kb():
    # VmHWM is this process's own high-water mark (ru_maxrss would include the parent's,
    # which Linux carries across fork + exec).
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM")).split()[1])
args = json.loads(sys.argv[1])
s3 = boto3.client("s3", endpoint_url=args["endpoint"], region_name="us-east-1",
                  aws_access_key_id="bench", aws_secret_access_key="bench")
baseline = peak_kb()
started = time.perf_counter()
if args["step"] == "split":
    out = workflow.split_input(s3, input_bucket="bench-in", input_key=args["key"], work_bucket="bench-out",
                               run_id=args["run_id"], chunk_rows=args["chunk_rows"])
else:
    out = workflow.merge_results(s3, bucket="bench-out", run_id=args["run_id"])
print(json.dumps({"seconds": time.perf_counter() - started, "baseline_kb": baseline,
                  "peak_kb": peak_kb(), "result": out}))
"""

WORDS = (
    "love night road heart fire dance rain city gold river dream light baby money truck "
    "corazón noche baila thunder highway summer whiskey hustle beat flow guitar"
).split()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_wide_csv(path: Path, rows: int, seed: int = 0) -> None:
    """Rows like a catalogue export: a short lyric line plus bulky pass-through columns
    (quoted, with commas and newlines), so the file is large while classifying stays cheap."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "title", "lyrics", "notes"])
        for i in range(rows):
            lyric = " ".join(rng.choice(WORDS) for _ in range(8))
            notes = ", ".join(rng.choice(WORDS) for _ in range(60)) + '\n"liner notes"'
            writer.writerow([i, f"Song {i}", lyric, notes])


def run_step(endpoint: str, **args) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", STEP, json.dumps({"endpoint": endpoint, **args})],
        capture_output=True, text=True, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def split_merge_memory(rows_list: list[int], chunk_rows: int, model_dir: Path) -> None:
    import boto3

    from lyrics_classifier import workflow
    from lyrics_classifier.runtime import Classifier

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench")
        for _ in range(100):  # until the server answers
            try:
                s3.list_buckets()
                break
            except Exception:
                time.sleep(0.1)
        s3.create_bucket(Bucket="bench-in")
        s3.create_bucket(Bucket="bench-out")
        classifier = Classifier.load(model_dir)
        print(f"\n== Split and Merge memory (chunk {chunk_rows:,} rows; each step in its own process)")
        print(f"{'rows':>9} {'file MB':>8} {'split peak MB':>14} {'merge peak MB':>14} "
              f"{'(python+boto3 MB)':>18} {'split s':>8} {'merge s':>8} {'output MB':>10}")
        for rows in rows_list:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"wide-{rows}.csv"
                write_wide_csv(path, rows)
                key = path.name
                s3.upload_file(str(path), "bench-in", key)
                size_mb = path.stat().st_size / 1e6
            run_id = f"bench-{rows}"
            split = run_step(endpoint, step="split", key=key, run_id=run_id, chunk_rows=chunk_rows)
            for index in range(split["result"]["chunks"]):
                workflow.classify_chunk(s3, classifier, bucket="bench-out", run_id=run_id, index=index,
                                        text_column_index=split["result"]["text_column_index"])
            merge = run_step(endpoint, step="merge", run_id=run_id)
            assert merge["result"]["rows_in"] == rows
            output_mb = s3.head_object(Bucket="bench-out", Key=merge["result"]["result_key"])["ContentLength"] / 1e6
            print(f"{rows:>9,} {size_mb:>8.1f} {split['peak_kb'] / 1024:>14.1f} {merge['peak_kb'] / 1024:>14.1f} "
                  f"{split['baseline_kb'] / 1024:>18.1f} {split['seconds']:>8.1f} {merge['seconds']:>8.1f} "
                  f"{output_mb:>10.1f}")
    finally:
        server.terminate()
        server.wait()


def end_to_end(path: Path, label: str, chunk_rows: int) -> None:
    from lyrics_classifier import local

    started = time.perf_counter()
    result = local.run_workflow(path, output=path.with_name(path.stem + ".out.csv"), chunk_rows=chunk_rows)
    wall = time.perf_counter() - started
    s = result.summary
    t = s["timings"]
    rows = s["rows_in"]
    classify_wall = wall - t["split_seconds"] - t["merge_seconds"]
    print(f"{label:<28} {rows:>7,} rows {wall:>7.1f}s {rows / wall:>8.1f} lyrics/s | split {t['split_seconds']:.2f}s, "
          f"classify+orchestration {classify_wall:.1f}s (sum of chunk time {t['classify_seconds_sum']:.1f}s), "
          f"merge {t['merge_seconds']:.2f}s, {s['chunks']} chunks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk-rows", type=int, default=500)
    parser.add_argument("--e2e-rows", type=int, default=10_000)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    import logging

    logging.getLogger("lyrics-classifier").setLevel(logging.WARNING)
    from lyrics_classifier.runtime import default_model_dir

    model_dir = default_model_dir().resolve()
    print(f"machine: {os.cpu_count()} CPUs; model: {model_dir}")
    if not args.skip_memory:
        split_merge_memory([args.rows // 10, args.rows], args.chunk_rows, model_dir)
    if not args.skip_e2e:
        from corpus import write_csv

        print("\n== End-to-end local runs (lyrics-classifier run: moto Step Functions + S3, real handlers)")
        with tempfile.TemporaryDirectory() as tmp:
            sample = Path(tmp) / "lyrics.csv"
            sample.write_bytes((REPO / "samples" / "lyrics.csv").read_bytes())
            end_to_end(sample, "samples/lyrics.csv", chunk_rows=100)
            corpus = Path(tmp) / "corpus.csv"
            write_csv(corpus, args.e2e_rows, seed=1)
            end_to_end(corpus, f"realistic corpus", chunk_rows=100)


if __name__ == "__main__":
    main()
