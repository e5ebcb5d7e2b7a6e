"""`make bench` (part 1): the classifier's speed, load time, cost and accuracy.

From one run on one machine and one corpus (bench/corpus.py: songs composed from the
sample snippets, median ~250 words, tail to ~1,000):

  * lyrics/s of the runtime (the default model: USE multilingual v3, onnxruntime int8;
    repeated lines once, each distinct line its own window, at most 32 per lyric),
    of the English model one option away (`build-model --encoder minilm`: all-MiniLM-L6-v2
    int8, the default before), and of the baseline a user would otherwise pick:
    sentence-transformers `encode` (PyTorch fp32, its default 256-token truncation) of
    all-MiniLM-L6-v2 with the English model's head; the ratios. Also the runtime with
    every repeated line encoded (no dedupe);
  * model load time (fresh process), CPU milliseconds per lyric on one thread, and what
    that costs per million lyrics on arm64 Lambda;
  * zero-shot accuracy on the samples (tuning half and held-out half) and on the corpus.

    python bench/model_speed.py [--songs 500] [--repeats 3] [--model models/default]
                                [--english-model models/minilm]

The machine may be shared: every system is timed on the same 100 songs in turn, `repeats`
times, and each keeps its fastest time per chunk (bursts of foreign load are filtered out
rather than averaged in).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import SAMPLES, make_corpus  # noqa: E402

from lyrics_classifier.contract import DEFAULT_RANGE_BYTES  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# AWS Lambda, arm64, us-east-1, first 6 billion GB-seconds a month (aws.amazon.com/lambda/pricing)
ARM64_PRICE_PER_GB_SECOND = 0.0000133334
PRICE_PER_MILLION_REQUESTS = 0.20
RECOMMENDED_MEMORY_MB = 1769  # one full vCPU: the runtime then uses one intra-op thread
CHUNK = 100  # songs per timed unit and per classify call


def split_samples(path: Path = SAMPLES) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The samples, halved per genre by id order: (tuning, held-out). The tuning half is
    what label descriptions were tuned on; the held-out half was only measured."""
    import csv

    rows: dict[str, list[tuple[str, str, str]]] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            rows.setdefault(row["genre"], []).append((row["id"], row["lyrics"], row["genre"]))
    tune, held = [], []
    for genre in sorted(rows):
        for k, (_, lyrics, g) in enumerate(sorted(rows[genre])):
            (tune if k % 2 == 0 else held).append((lyrics, g))
    return tune, held


def accuracy(classifier, items) -> float:
    predictions = classifier.classify([text for text, _ in items])
    return sum(p.label == g for p, (_, g) in zip(predictions, items)) / len(items)


def load_time(model_dir: Path, runs: int = 5) -> tuple[float, float]:
    """Median seconds of Classifier.load in a fresh process (imports excluded, then included)."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "from lyrics_classifier.runtime import Classifier\n"
        "t1 = time.perf_counter()\n"
        f"c = Classifier.load({str(model_dir)!r})\n"
        "t2 = time.perf_counter(); print(t2 - t1, t2 - t0)"
    )
    loads, totals = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        load, total = map(float, out.stdout.split())
        loads.append(load)
        totals.append(total)
    return statistics.median(loads), statistics.median(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=500)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "default")
    parser.add_argument("--english-model", type=Path, default=REPO / "models" / "minilm",
                        help="all-MiniLM-L6-v2 model directory (build-model --encoder minilm): its head "
                             "is the baseline's head")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="labelled snippets (id,lyrics,genre)")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    from lyrics_classifier.modelbuild.encoder import default_source
    from lyrics_classifier.modelbuild.graph import head_matrices
    from lyrics_classifier.runtime import Classifier, threads_for_environment

    cores = threads_for_environment()
    torch.set_num_threads(cores)
    corpus = make_corpus(args.songs, seed=0, samples=args.samples)
    texts = [t for t, _ in corpus]
    genres = [g for _, g in corpus]
    words = sorted(len(t.split()) for t in texts)
    print(f"machine: {os.uname().machine}, {cores} CPUs visible; python {sys.version.split()[0]}, "
          f"torch {torch.__version__}")
    print(f"corpus: {len(texts)} songs from {args.samples.name}, words median {words[len(words) // 2]}, "
          f"p90 {words[int(len(words) * 0.9)]}, max {words[-1]}")

    for model in (args.model, args.english_model):
        load, load_total = load_time(model)
        size = (model / "model.onnx").stat().st_size / 1e6
        print(f"model: {model} ({size:.1f} MB model.onnx); load {load * 1000:.0f} ms "
              f"(with imports {load_total * 1000:.0f} ms), median of 5 fresh processes")
        if model == args.model:
            load_ms = load * 1000

    classifier = Classifier.load(args.model, threads=cores)
    undeduped = Classifier.load(args.model, threads=cores, dedupe_lines=False)
    single = Classifier.load(args.model, threads=1)  # one vCPU: the Lambda cost
    english = Classifier.load(args.english_model, threads=cores)
    labels = english.labels
    weight, bias = head_matrices(args.english_model)
    st = SentenceTransformer(str(default_source()), device="cpu")

    def runtime(clf):
        return lambda items: [p.label for p in clf.classify(items)]

    def baseline(items, threads=cores):
        torch.set_num_threads(threads)
        embeddings = st.encode(items, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        torch.set_num_threads(cores)
        return [labels[i] for i in (embeddings @ weight + bias).argmax(axis=1)]

    systems = {
        "runtime": runtime(classifier),
        "runtime, no dedupe": runtime(undeduped),
        "runtime, 1 thread": runtime(single),
        "english": runtime(english),
        "baseline": baseline,
        "baseline, 1 thread": lambda items: baseline(items, threads=1),
    }
    for fn in systems.values():
        fn(texts[:40])  # warm up
    # The machine is shared and noisy: time every system on the same chunk of songs, one
    # after the other, `repeats` times, and keep each system's fastest time per chunk.
    wall = dict.fromkeys(systems, 0.0)
    cpu = dict.fromkeys(systems, 0.0)
    predictions: dict[str, list[str]] = {name: [] for name in systems}
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start : start + CHUNK]
        best = {name: (float("inf"), 0.0) for name in wall}
        for _ in range(args.repeats):
            for name, fn in systems.items():
                w, c = time.perf_counter(), time.process_time()
                result = fn(chunk)
                w, c = time.perf_counter() - w, time.process_time() - c
                best[name] = min(best[name], (w, c))
                if len(predictions[name]) < start + len(chunk):
                    predictions[name].extend(result)
        for name, (w, c) in best.items():
            wall[name] += w
            cpu[name] += c
    accuracy_of = {name: sum(p == g for p, g in zip(preds, genres)) / len(genres) for name, preds in predictions.items()}
    windows = {name: clf.count_windows(texts)
               for name, clf in (("runtime", classifier), ("runtime, no dedupe", undeduped), ("english", english))}
    rt_wall, st_wall, en_wall = wall["runtime"], wall["baseline"], wall["english"]
    rt_cpu, one_wall, one_cpu = cpu["runtime"], wall["runtime, 1 thread"], cpu["runtime, 1 thread"]

    n = len(texts)
    print()
    print(f"{'':60s} {'lyrics/s':>9s} {'windows':>8s} {'corpus acc':>10s}")
    rows = [
        ("runtime: USE-m3 int8 (default), each distinct line once", "runtime", windows["runtime"]),
        ("runtime, every repeated line encoded", "runtime, no dedupe", windows["runtime, no dedupe"]),
        ("English model: MiniLM-L6 int8 (--encoder minilm)", "english", windows["english"]),
        ("baseline: sentence-transformers MiniLM-L6, fp32, 256 tok", "baseline", "-"),
    ]
    for title, name, count in rows:
        print(f"{title:60s} {n / wall[name]:9.1f} {count:>8} {accuracy_of[name]:10.1%}")
    print(f"{'runtime, 1 thread':60s} {n / one_wall:9.1f} {windows['runtime']:8d}")
    print(f"{'baseline, 1 thread':60s} {n / wall['baseline, 1 thread']:9.1f}")
    print(f"speed-up over the baseline: {st_wall / rt_wall:.1f}x on {cores} threads, "
          f"{wall['baseline, 1 thread'] / one_wall:.1f}x on 1 thread "
          f"(the English model: {st_wall / en_wall:.1f}x; without line dedupe: "
          f"{st_wall / wall['runtime, no dedupe']:.1f}x)")

    ms_per_lyric = one_cpu / n * 1000
    gb = RECOMMENDED_MEMORY_MB / 1024
    # Lambda bills wall time; with one vCPU the wall time per lyric is about the CPU time
    seconds = max(one_wall, one_cpu) / n
    cost = seconds * gb * ARM64_PRICE_PER_GB_SECOND * 1e6
    # One invocation per 8 MiB range (the stack's default range_mb): ~5,600 lyrics of ~1.5 KB.
    lyrics_per_invocation = DEFAULT_RANGE_BYTES // 1500
    requests = 1e6 / lyrics_per_invocation * PRICE_PER_MILLION_REQUESTS / 1e6
    print()
    print(f"one thread: {n / one_wall:.1f} lyrics/s, {ms_per_lyric:.1f} CPU ms per lyric "
          f"({rt_cpu / n * 1000:.1f} CPU ms per lyric on {cores} threads)")
    print(f"cost per million lyrics on arm64 Lambda at {RECOMMENDED_MEMORY_MB} MB (1 vCPU) and "
          f"${ARM64_PRICE_PER_GB_SECOND}/GB-s: ${cost:.2f} compute + ${requests:.4f} requests "
          f"({lyrics_per_invocation:,} lyrics of ~1.5 KB per invocation); measured on this x86_64 machine, "
          "Graviton speed differs")

    tune, held = split_samples(args.samples)
    print()
    for name, clf in (("default", classifier), ("English", english)):
        print(f"{name} model's accuracy on {args.samples.name}: tuning half {accuracy(clf, tune):.1%} "
              f"({len(tune)}), held-out half {accuracy(clf, held):.1%} ({len(held)})")
    summary = {
        "songs": n, "runtime_lyrics_per_s": n / rt_wall, "baseline_lyrics_per_s": n / st_wall,
        "english_lyrics_per_s": n / en_wall,
        "ratio": st_wall / rt_wall, "ratio_1_thread": wall["baseline, 1 thread"] / one_wall, "load_ms": load_ms,
        "cpu_ms_per_lyric": ms_per_lyric, "cost_per_million_usd": cost, "corpus_accuracy": accuracy_of["runtime"],
        "baseline_corpus_accuracy": accuracy_of["baseline"], "english_corpus_accuracy": accuracy_of["english"],
    }
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_speed.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
