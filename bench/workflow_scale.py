"""Workflow scale benchmark (`make bench`, after bench/model_speed.py).

1. The index pass alone: RangeIndexer (Split's byte-level pass) over in-memory 8 MiB blocks
   of generated lyrics-dump CSVs (bench/scale_data.py), one thread: MB/s per vCPU against
   the 200 MB/s target.
2. Split and Merge at 0.1, 1 and 5 GB against a moto S3 server on 127.0.0.1
   (bench/s3_server.py: moto.server with its whole-object ranged GET and in-memory multipart
   completion replaced, see there). The input is streamed to disk and uploaded with
   upload_file to a versioned bucket; Split and Merge each run in a process of their own
   (bench/scale_step.py), so each peak RSS is the step's own. Between them every range is
   classified by classify_range with a near-free model (bench/nearfree_model.py), two at a
   time, so that parts exist; then the result object is checked.
3. Extrapolation to 15 and 50 GB at the stack's memory sizes and timeouts.
4. End-to-end local runs (`lyrics_classifier.local.run_workflow`, the real default model):
   samples/lyrics.csv and a ~20 MB wide file (3 ranges): lyrics/s.

    python bench/workflow_scale.py [--sizes-gb 0.1 1 5] [--skip-index] [--skip-scale] [--skip-e2e]

GB here is 10^9 bytes, MB 10^6, MiB 2^20. The machine may be shared: the index pass keeps
the best of several repeats; the S3 steps run once per size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH))

GB, MB, MIB = 10**9, 10**6, 2**20
TARGET_MB_S = 200
LAMBDA_MB_PER_VCPU = 1769
INPUT_BUCKET, WORK_BUCKET = "bench-in", "bench-out"


def rule(title: str) -> None:
    print(f"\n== {title}", flush=True)


# ----------------------------------------------------------------------------- 1. index pass


def index_pass(total_mb: int, repeats: int) -> list[dict]:
    import scale_data
    from lyrics_classifier.contract import DEFAULT_RANGE_BYTES
    from lyrics_classifier.index import RangeIndexer
    from lyrics_classifier.workflow import READ_BLOCK_BYTES

    line = b'""la"" la\n'
    degenerate = b'id,lyrics\n1,"' + line * ((64 * MIB) // len(line)) + b'"\n2,"x"\n'
    cases = [
        ("lyrics dump", *scale_data.blocks(total_mb * MIB, READ_BLOCK_BYTES)),
        ("quote-dense lyrics (every other word quoted)",
         *scale_data.blocks(total_mb * MIB, READ_BLOCK_BYTES, quote_dense=True)),
        ("degenerate: one 64 MiB field, a quote pair on every line",
         [degenerate[i : i + READ_BLOCK_BYTES] for i in range(0, len(degenerate), READ_BLOCK_BYTES)], 2),
    ]
    rule(f"1. Index pass: RangeIndexer over in-memory {READ_BLOCK_BYTES // MIB} MiB blocks, "
         f"{DEFAULT_RANGE_BYTES // MIB} MiB ranges, one thread (= per vCPU), best of {repeats}")
    print(f"{'input':<57} {'MB':>6} {'bytes/row':>9} {'quotes':>7} {'ranges':>6} {'MB/s':>7} {'/ 200 MB/s':>10}")
    rows_out = []
    for name, blocks, rows in cases:
        size = sum(map(len, blocks))
        quotes = sum(block.count(b'"') for block in blocks) / size
        best, ranges = math.inf, 0
        for _ in range(repeats):
            indexer = RangeIndexer(DEFAULT_RANGE_BYTES)
            started = time.perf_counter()
            for block in blocks:
                indexer.feed(block)
            ranges = len(indexer.finish())
            best = min(best, time.perf_counter() - started)
            assert not indexer.in_quotes
        speed = size / best / MB
        rows_out.append({"input": name, "mb": size / MB, "bytes_per_row": size / rows, "quotes": quotes,
                         "ranges": ranges, "mb_s": speed, "ratio": speed / TARGET_MB_S})
        print(f"{name:<57} {size / MB:>6.0f} {size / rows:>9,.0f} {quotes:>7.1%} {ranges:>6} {speed:>7.0f} "
              f"{speed / TARGET_MB_S:>9.2f}x")
        del blocks
    print("(the degenerate case is not a target: a record far longer than a range, whose every line holds "
          "quotes, is walked by the cut's regex instead of bytes.count)")
    rows_out.append(gzip_pass(total_mb, repeats, rows_out[0]["mb_s"]))
    rows_out.append(tally_pass(total_mb, repeats, rows_out[0]["mb_s"]))
    return rows_out


def tally_pass(total_mb: int, repeats: int, plain_mb_s: float) -> dict:
    """Split's pass over a UTF-8 file whose first 64 KiB hold a Windows-1252 byte: the index
    pass plus the UTF-8 tally that lets the whole file decide (workflow.split.Utf8Tally)."""
    import scale_data
    from lyrics_classifier.contract import DEFAULT_RANGE_BYTES
    from lyrics_classifier.index import RangeIndexer
    from lyrics_classifier.workflow import READ_BLOCK_BYTES
    from lyrics_classifier.workflow.split import Utf8Tally

    blocks, _rows = scale_data.blocks(total_mb * MIB, READ_BLOCK_BYTES)
    blocks[0] = blocks[0][:200] + b"\xe9" + blocks[0][201:]  # one stray byte near the top
    size = sum(map(len, blocks))
    best = math.inf
    for _ in range(repeats):
        indexer, tally = RangeIndexer(DEFAULT_RANGE_BYTES), Utf8Tally()
        started = time.perf_counter()
        for block in tally.watch(iter(blocks)):
            indexer.feed(block)
        indexer.finish()
        best = min(best, time.perf_counter() - started)
        assert tally.mostly_utf8()
    speed = size / best / MB
    print(f"{'lyrics dump, one cp1252 byte in row 1: index + UTF-8 tally':<57} {size / MB:>6.0f} "
          f"{'':>9} {'':>7} {'':>6} {speed:>7.0f} {speed / TARGET_MB_S:>9.2f}x   "
          f"({plain_mb_s / speed:.1f}x the plain pass's CPU per byte)")
    return {"input": "lyrics dump, one cp1252 byte in row 1: index + UTF-8 tally", "mb": size / MB,
            "mb_s": speed, "ratio": speed / TARGET_MB_S, "cpu_vs_plain": plain_mb_s / speed}


def gzip_pass(total_mb: int, repeats: int, plain_mb_s: float) -> dict:
    """Split's pass over gzip input: the stream decompressed (workflow.split._gunzipped, 8 MiB
    compressed reads) and indexed, in one thread, side by side with the plain pass above. The
    copy Split also writes to the work area is S3 upload time, not CPU, and is not counted."""
    import gzip

    import scale_data
    from lyrics_classifier.contract import DEFAULT_RANGE_BYTES
    from lyrics_classifier.index import RangeIndexer
    from lyrics_classifier.workflow import READ_BLOCK_BYTES
    from lyrics_classifier.workflow.split import _gunzipped

    blocks, _rows = scale_data.blocks(total_mb * MIB, READ_BLOCK_BYTES)
    plain = b"".join(blocks)
    del blocks
    packed = gzip.compress(plain, compresslevel=6)  # gzip's default level, as `gzip songs.csv` writes
    compressed = [packed[i : i + READ_BLOCK_BYTES] for i in range(0, len(packed), READ_BLOCK_BYTES)]
    best = math.inf
    for _ in range(repeats):
        indexer = RangeIndexer(DEFAULT_RANGE_BYTES)
        started = time.perf_counter()
        for block in _gunzipped(iter(compressed)):
            indexer.feed(block)
        indexer.finish()
        best = min(best, time.perf_counter() - started)
    speed = len(plain) / best / MB  # MB of decompressed CSV per second
    ratio = len(plain) / len(packed)
    print(f"{'lyrics dump, gzip -6 (' + f'{ratio:.1f}x smaller): gunzip + index':<57} {len(plain) / MB:>6.0f} "
          f"{'':>9} {'':>7} {'':>6} {speed:>7.0f} {speed / TARGET_MB_S:>9.2f}x   "
          f"({plain_mb_s / speed:.1f}x the plain pass's CPU per byte)")
    return {"input": "lyrics dump, gzip -6: gunzip + index", "mb": len(plain) / MB, "compression_ratio": ratio,
            "mb_s": speed, "ratio": speed / TARGET_MB_S, "cpu_vs_plain": plain_mb_s / speed}


# ----------------------------------------------------------------------------- 2. Split and Merge


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def s3_client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(max_pool_connections=32, retries={"mode": "adaptive", "max_attempts": 8}),
    )


class S3Server:
    """moto's S3 server in its own process (patched, unless stock), on a free local port."""

    def __init__(self, stock: bool):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.tmp = Path(tempfile.mkdtemp(prefix="s3-", dir=OUT))
        command = [sys.executable, str(BENCH / "s3_server.py"), "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(
            command + (["--stock"] if stock else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": str(self.tmp)},
        )

    def __enter__(self):
        s3 = s3_client(self.endpoint)
        for _ in range(200):
            try:
                s3.list_buckets()
                return self
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("the moto S3 server did not start")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_step(**args) -> dict:
    done = subprocess.run(
        [sys.executable, str(BENCH / "scale_step.py"), json.dumps(args)], capture_output=True, text=True,
    )
    if done.returncode:
        raise RuntimeError(f"{args['step']} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_size(size_gb: float, model_dir: Path, stock: bool, keep: bool) -> dict:
    import scale_data
    from boto3.s3.transfer import TransferConfig

    from lyrics_classifier import workflow
    from lyrics_classifier.runtime import Classifier

    record: dict = {"size_gb": size_gb}
    data_dir = OUT / "scale"
    path = data_dir / f"lyrics-{size_gb:g}GB.csv"
    started = time.perf_counter()
    rows, size = scale_data.write_csv(path, int(size_gb * GB))
    record.update(rows=rows, bytes=size, generate_s=time.perf_counter() - started)

    with S3Server(stock) as server:
        s3 = s3_client(server.endpoint)
        for bucket in (INPUT_BUCKET, WORK_BUCKET):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        key = path.name  # the bucket root: the model's own labels (a folder selects labels/<folder>.json)
        started = time.perf_counter()
        s3.upload_file(str(path), INPUT_BUCKET, key, Config=TransferConfig(max_concurrency=4))
        record["upload_s"] = time.perf_counter() - started
        if not keep:
            path.unlink()
        version = s3.head_object(Bucket=INPUT_BUCKET, Key=key)["VersionId"]
        run_id = f"bench-{size_gb:g}gb-{uuid.uuid4().hex[:8]}"
        common = {"endpoint": server.endpoint, "work_bucket": WORK_BUCKET, "run_id": run_id}

        split = run_step(step="split", input_bucket=INPUT_BUCKET, key=key, version_id=version, **common)
        job = split["result"]["job"]
        items = json.loads(s3.get_object(Bucket=WORK_BUCKET, Key=split["result"]["manifest_key"])["Body"].read())
        assert len(items) == split["result"]["ranges"]

        classifier = Classifier.load(model_dir, threads=1)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2) as pool:
            classified = list(pool.map(
                lambda item: workflow.classify_range(s3, classifier, job=job, byte_range=item), items))
        record["classify_s"] = time.perf_counter() - started
        assert sum(c["rows"] for c in classified) == rows

        merge = run_step(step="merge", **common)
        result = merge["result"]
        head = s3.head_object(Bucket=WORK_BUCKET, Key=result["result_key"])
        summary = json.loads(s3.get_object(Bucket=WORK_BUCKET, Key=result["summary_key"])["Body"].read())
        first = s3.get_object(Bucket=WORK_BUCKET, Key=result["result_key"], Range="bytes=0-255")["Body"].read()
        tail = s3.get_object(Bucket=WORK_BUCKET, Key=result["result_key"],
                             Range=f"bytes={max(0, head['ContentLength'] - 256 * 1024)}-")["Body"].read()
        checks = {
            "rows_in": result["rows_in"] == rows,
            "accounted": result["rows_classified"] + result["rows_rejected"] == rows,
            "size": head["ContentLength"] == summary["output"]["bytes"] > size,
            "header": first.startswith(",".join(scale_data.HEADER + workflow.output_columns(
                scale_data.HEADER, classifier.labels)).encode() + b"\n"),
            "last row": (b"\n%d," % rows) in tail,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise AssertionError(f"{size_gb:g} GB: result checks failed: {failed} ({result}, {head['ContentLength']})")
    record.update(
        ranges=split["result"]["ranges"],
        split=split,
        merge=merge,
        result_bytes=head["ContentLength"],
        rows_in=result["rows_in"],
    )
    return record


def print_scale(records: list[dict]) -> None:
    print("Split (its own process; CPU s = user + system of that process):")
    print(f"{'size':>6} {'rows':>10} {'file MB':>8} {'ranges':>6} {'Split s':>8} {'CPU s':>7} {'MB/s':>6} "
          f"{'peak RSS MB':>11} {'(at start)':>10} {'requests':>9}")
    for r in records:
        s = r["split"]
        print(f"{r['size_gb']:>4g}GB {r['rows']:>10,} {r['bytes'] / MB:>8,.0f} {r['ranges']:>6,} {s['seconds']:>8.1f} "
              f"{s['cpu_seconds']:>7.1f} {r['bytes'] / MB / s['seconds']:>6.0f} {s['peak_kb'] / 1024:>11.0f} "
              f"{s['baseline_kb'] / 1024:>10.0f} {sum(s['requests'].values()):>9,}")
    print("Merge (its own process) and the checks of the result:")
    print(f"{'size':>6} {'ranges':>6} {'Merge s':>8} {'in Complete':>11} {'without':>8} {'CPU s':>6} "
          f"{'peak RSS MB':>11} {'(at start)':>10} {'requests':>9} {'result MB':>9} {'rows_in':>10} {'classify s':>10}")
    for r in records:
        m = r["merge"]
        print(f"{r['size_gb']:>4g}GB {r['ranges']:>6,} {m['seconds']:>8.2f} "
              f"{m['request_seconds'].get('CompleteMultipartUpload', 0):>10.2f}s {merge_own(r):>8.2f} "
              f"{m['cpu_seconds']:>6.2f} {m['peak_kb'] / 1024:>11.0f} {m['baseline_kb'] / 1024:>10.0f} "
              f"{sum(m['requests'].values()):>9,} {r['result_bytes'] / MB:>9,.0f} {r['rows_in']:>10,} "
              f"{r['classify_s']:>10.1f}")
    print("(rows_in = generated rows, result size = the parts' bytes > input, header and last row checked; "
          "\"in Complete\": CompleteMultipartUpload, where moto copies every byte, S3 assembles server-side; classify s: all ranges, "
          "2 threads, near-free model, wall; generate + upload: "
          + ", ".join(f"{r['size_gb']:g} GB {r['generate_s']:.0f}+{r['upload_s']:.0f} s" for r in records) + ")")


# ----------------------------------------------------------------------------- 3. extrapolation


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares a + b*x (through the origin with one point)."""
    if len(xs) == 1:
        return 0.0, ys[0] / xs[0]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def merge_own(record: dict) -> float:
    """Merge's seconds without CompleteMultipartUpload, in which moto copies every byte of the
    result (S3 assembles the object server-side, without the function's CPU)."""
    merge = record["merge"]
    return merge["seconds"] - merge["request_seconds"].get("CompleteMultipartUpload", 0.0)


def planned_ranges(size: int) -> int:
    from lyrics_classifier.contract import DEFAULT_RANGE_BYTES, MIN_RANGE_BYTES, PLANNED_MAX_PARTS

    range_bytes = max(DEFAULT_RANGE_BYTES, MIN_RANGE_BYTES, math.ceil(size / PLANNED_MAX_PARTS))
    return max(1, size // range_bytes)


def extrapolate(records: list[dict], args: argparse.Namespace) -> list[dict]:
    from lyrics_classifier.workflow import READ_BLOCK_BYTES

    latency = args.latency_ms / 1000
    split_a, split_b = fit([r["bytes"] for r in records], [r["split"]["seconds"] for r in records])
    merge_a, merge_b = fit([r["ranges"] for r in records], [merge_own(r) for r in records])
    biggest = max(records, key=lambda r: r["bytes"])
    split_gets = biggest["split"]["requests"].get("GetObject", 0)
    split_other = sum(biggest["split"]["requests"].values()) - split_gets
    merge_stats = biggest["ranges"]
    merge_pages = biggest["merge"]["requests"].get("ListParts", 0)
    merge_other = sum(biggest["merge"]["requests"].values()) - merge_stats - merge_pages
    split_factor = LAMBDA_MB_PER_VCPU / args.split_memory
    merge_factor = LAMBDA_MB_PER_VCPU / args.merge_memory

    rule(f"3. Extrapolation to the deployed stack: Split {args.split_timeout} s at {args.split_memory:,} MB "
         f"({args.split_memory / LAMBDA_MB_PER_VCPU:.2f} vCPU), Merge {args.merge_timeout} s at "
         f"{args.merge_memory:,} MB ({args.merge_memory / LAMBDA_MB_PER_VCPU:.2f} vCPU)")
    sizes = ", ".join(f"{r['size_gb']:g}" for r in records)
    print(f"fits over {sizes} GB: Split s = {split_a:.2f} + "
          f"{split_b * GB:.2f} per GB; Merge s (without moto's CompleteMultipartUpload) = {merge_a:.2f} + "
          f"{merge_b * 1000:.2f} per 1,000 ranges")
    print(f"{'step':<5} {'size':>5} {'ranges':>6} {'fit here':>8} {'x CPU':>6} {'at memory':>9} "
          f"{'requests (sequential)':>26} {f'+{args.latency_ms:g} ms each':>12} {'predicted':>9} {'timeout':>7} "
          f"{'fraction':>8}")
    out = []
    for size_gb in args.predict_gb:
        size = int(size_gb * GB)
        ranges = planned_ranges(size)
        gets = math.ceil(size / READ_BLOCK_BYTES)
        rows = [
            ("Split", split_a + split_b * size, split_factor, f"{gets:,} GETs + {split_other}",
             gets + split_other, args.split_timeout),
            ("Merge", merge_a + merge_b * ranges, merge_factor,
             f"{ranges:,}/16 + {math.ceil(ranges / 1000)} pages + {merge_other}",
             math.ceil(ranges / 16) + math.ceil(ranges / 1000) + merge_other, args.merge_timeout),
        ]
        for step, here, factor, what, sequential, timeout in rows:
            scaled = here * factor
            total = scaled + sequential * latency
            out.append({"step": step, "size_gb": size_gb, "ranges": ranges, "here_s": here, "factor": factor,
                        "scaled_s": scaled, "requests": sequential, "latency_s": sequential * latency,
                        "predicted_s": total, "timeout_s": timeout, "fraction": total / timeout})
            print(f"{step:<5} {size_gb:>3g}GB {ranges:>6,} {here:>7.1f}s {factor:>5.2f}x {scaled:>8.1f}s {what:>26} "
                  f"{sequential * latency:>11.1f}s {total:>8.1f}s {timeout:>6}s {total / timeout:>8.2f}")
    print(f"(assumes one core here ~= one Lambda vCPU; the whole measured time is scaled by 1769/memory, "
          f"though part of it is waiting on S3; real S3 adds ~{args.latency_ms:g} ms per request, counted as if "
          f"sequential: Split's {READ_BLOCK_BYTES // MIB} MiB ranged GETs all (its read-ahead of 4 would hide "
          f"three quarters), Merge's stat GETs in 16 threads plus list_parts pages of 1,000; Merge's fit leaves "
          f"out moto's byte copy in CompleteMultipartUpload, which S3 does server-side (AWS documents that "
          f"completing can take minutes for large objects: not measurable here); goal: fraction <= 0.5)")
    return out


# ----------------------------------------------------------------------------- 4. end to end


def write_wide_csv(path: Path, target_bytes: int, seed: int = 0) -> int:
    """Rows like a catalogue export with bulky pass-through columns: a short lyric plus quoted
    notes with commas and newlines, so the file is large while classifying stays cheap."""
    import csv
    import random

    words = ("love night road heart fire dance rain city gold river dream light baby money truck "
             "corazón noche baila thunder highway summer whiskey hustle beat flow guitar").split()
    rng = random.Random(seed)
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "title", "lyrics", "notes"])
        while handle.tell() < target_bytes:
            rows += 1
            lyric = " ".join(rng.choice(words) for _ in range(12))
            notes = ", ".join(rng.choice(words) for _ in range(300)) + '\n"liner notes"'
            writer.writerow([rows, f"Song {rows}", lyric, notes])
    return rows


def end_to_end(path: Path, label: str) -> dict:
    from lyrics_classifier import local

    started = time.perf_counter()
    result = local.run_workflow(path, output=path.with_name(path.stem + ".out.csv"))
    wall = time.perf_counter() - started
    s, t = result.summary, result.summary["timings"]
    rows = s["rows_in"]
    record = {"input": label, "bytes": path.stat().st_size, "rows": rows, "ranges": s["ranges"], "wall_s": wall,
              "lyrics_s": rows / wall, "split_s": t["split_seconds"], "merge_s": t["merge_seconds"],
              "classify_s": wall - t["split_seconds"] - t["merge_seconds"],
              "classify_sum_s": t["classify_seconds_sum"]}
    print(f"{label:<34} {record['bytes'] / MB:>6.1f} {rows:>7,} {s['ranges']:>6} {wall:>7.1f}s {rows / wall:>9.1f} "
          f"{t['split_seconds']:>7.2f}s {record['classify_s']:>10.1f}s {t['classify_seconds_sum']:>9.1f}s "
          f"{t['merge_seconds']:>7.2f}s")
    return record


def end_to_end_runs(wide_mb: float) -> list[dict]:
    from lyrics_classifier.runtime import default_model_dir

    rule(f"4. End-to-end local runs (local.run_workflow: moto Step Functions + S3 in-process, real handlers, "
         f"model {default_model_dir()}, {os.cpu_count()} ranges at a time)")
    print(f"{'input':<34} {'MB':>6} {'rows':>7} {'ranges':>6} {'wall':>8} {'lyrics/s':>9} {'split':>8} "
          f"{'classify+orch.':>11} {'(sum)':>10} {'merge':>8}")
    out = []
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        sample = Path(tmp) / "lyrics.csv"
        shutil.copyfile(REPO / "samples" / "lyrics.csv", sample)
        out.append(end_to_end(sample, "samples/lyrics.csv"))
        wide = Path(tmp) / "wide.csv"
        write_wide_csv(wide, int(wide_mb * MB))
        out.append(end_to_end(wide, "wide file (short lyric + notes)"))
    print("(classify+orch.: wall minus Split and Merge; (sum): the ranges' own Classify seconds, added up)")
    return out


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[0.1, 1.0], help="Split/Merge sizes (GB)")
    parser.add_argument("--predict-gb", type=float, nargs="+", default=[15.0, 50.0])
    parser.add_argument("--index-mb", type=int, default=256, help="MiB of CSV for the index pass")
    parser.add_argument("--repeats", type=int, default=5, help="index pass repeats (the best is kept)")
    parser.add_argument("--wide-mb", type=float, default=20.0, help="size of the end-to-end wide file (MB)")
    parser.add_argument("--split-memory", type=int, default=1769)
    parser.add_argument("--split-timeout", type=int, default=900)
    parser.add_argument("--merge-memory", type=int, default=512)
    parser.add_argument("--merge-timeout", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=30.0, help="S3 latency added per request")
    parser.add_argument("--stock-moto", action="store_true", help="moto's S3 server unpatched (small sizes only)")
    parser.add_argument("--keep", action="store_true", help="keep the generated CSVs in bench/out/scale")
    parser.add_argument("--skip-index", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--json", type=Path, default=OUT / "workflow_scale.json", help="all numbers, as JSON")
    args = parser.parse_args()
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

    logging.getLogger("lyrics-classifier").setLevel(logging.WARNING)
    OUT.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "args": vars(args) | {"json": str(args.json)}}
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    begun = time.perf_counter()
    if not args.skip_index:
        report["index"] = index_pass(args.index_mb, args.repeats)
    if not args.skip_scale:
        import nearfree_model

        from lyrics_classifier.runtime import default_model_dir

        model_dir = nearfree_model.build(OUT / "near-free-model", REPO / default_model_dir())
        rule(f"2. Split and Merge against moto's S3 server ({'stock' if args.stock_moto else 'bench/s3_server.py'}"
             f", 127.0.0.1), near-free model between them")
        records = []
        try:
            for size_gb in args.sizes_gb:
                records.append(one_size(size_gb, model_dir, args.stock_moto, args.keep))
                print(f"  {size_gb:g} GB done ({time.perf_counter() - begun:.0f} s so far)", flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(OUT / "scale", ignore_errors=True)
        report["scale"] = records
        print_scale(records)
        report["extrapolation"] = extrapolate(records, args)
    if not args.skip_e2e:
        report["end_to_end"] = end_to_end_runs(args.wide_mb)
    report["bench_seconds"] = time.perf_counter() - begun
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"\n({time.perf_counter() - begun:.0f} s in all; numbers in {args.json.relative_to(REPO) if args.json.is_relative_to(REPO) else args.json})")


if __name__ == "__main__":
    main()
