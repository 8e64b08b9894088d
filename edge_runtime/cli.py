"""``edge-score``: the gateway's scoring loop (standard library argparse: the runtime carries no click).

Reads samples (CSV with a header, from a file or stdin), prints one JSON object per scored sample
to stdout, reports bad lines on stderr and keeps going, and prints a summary to stderr at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TextIO

from .bundle import BundleError
from .csv_input import CsvRowReader, InputError, RowError
from .multistream import MultiStreamScorer, rows_with_stream
from .scorer import Scorer
from .watch import add_loop_arguments, run_loop, wants_loop

EXIT_OK, EXIT_BAD_BUNDLE, EXIT_BAD_INPUT = 0, 2, 3


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-score",
        description="Score a sensor stream with a gru-edge bundle: one JSON line per scored sample.",
    )
    p.add_argument("bundle", nargs="?", default=None,
                   help="bundle directory (holds manifest.json); omit with --watch GATEWAY_DIR")
    p.add_argument("--input", "-i", default="-", help="CSV file with a header, or - for stdin (default)")
    p.add_argument("--delimiter", default=None, help="field delimiter (default: sniffed from the header)")
    p.add_argument("--timestamp-column", default=None, help="column echoed as 'timestamp' (default: auto)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    p.add_argument("--only-anomalies", action="store_true", help="print only samples flagged anomalous")
    p.add_argument("--mode", choices=("exact", "stateful"), default="exact",
                   help="exact: rescore the whole window per sample (default, equals batch scoring); stateful: "
                        "one GRU step per sample with the bundle's step model (see the manifest's parity.stateful "
                        "for how far it departs from exact)")
    p.add_argument("--stream-column", default=None, metavar="NAME",
                   help="column naming the stream (e.g. pump id) each row belongs to: every stream keeps its own "
                        "window or state; records carry 'stream' and per-stream 'index'")
    p.add_argument("--quiet", "-q", action="store_true", help="no summary on stderr")
    add_loop_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":  # `edge-score bench BUNDLE...`: measure, not score (see bench.py)
        from .bench import main as bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if wants_loop(args):  # --watch, MQTT, alarms, signatures, health: the long-lived loop
        return run_loop(args)
    if args.bundle is None:
        parser.error("give a BUNDLE directory, or --watch GATEWAY_DIR")
    try:
        scorer = Scorer(args.bundle, threads=args.threads)
        if args.mode == "stateful":
            scorer.step_model()  # verified and self-tested now, so a bundle without one is refused up front
    except BundleError as e:
        print(f"edge-score: refusing bundle: {e}", file=sys.stderr)
        return EXIT_BAD_BUNDLE
    stream, source = (sys.stdin, "<stdin>") if args.input == "-" else (None, args.input)
    try:
        if stream is None:
            try:
                stream = open(args.input, encoding="utf-8", newline="")
            except OSError as e:
                raise InputError(f"{args.input}: cannot open: {e.strerror}") from e
        with stream:
            summary = score_stream(scorer, stream, source, sys.stdout, sys.stderr, args)
    except InputError as e:
        print(f"edge-score: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.quiet:
        print(json.dumps({"summary": summary}), file=sys.stderr)
    return EXIT_OK


def score_stream(scorer: Scorer, stream: TextIO, source: str, out: TextIO, err: TextIO, args) -> dict:
    reader = CsvRowReader.open(stream, source, features=scorer.features, timestamp_column=args.timestamp_column,
                               delimiter=args.delimiter)
    mode = getattr(args, "mode", "exact")
    stream_column = getattr(args, "stream_column", None)
    if stream_column:
        multi = MultiStreamScorer(scorer, mode)
        rows = rows_with_stream(reader, stream_column)
    else:
        live = scorer.stream(mode)
        rows = ((None, row) for row in reader)
    # On a pipe every line is flushed as it is scored (a live loop); into a file, output is buffered.
    flush = source == "<stdin>" or out.isatty()
    counts = {"lines": 0, "samples": 0, "scored": 0, "anomalies": 0, "bad_lines": 0}
    started = time.perf_counter()
    for stream_id, row in rows:
        counts["lines"] += 1
        if isinstance(row, RowError):
            counts["bad_lines"] += 1
            print(f"edge-score: skipped {row.message}", file=err)
            continue
        try:
            event = live.push(row.values) if stream_id is None else multi.push(stream_id, row.values)
        except ValueError as e:  # a sample the model must not see (e.g. non-finite): skip it, keep the loop
            counts["bad_lines"] += 1
            print(f"edge-score: skipped {source}, line {row.line}: {e}", file=err)
            continue
        counts["samples"] += 1
        if event is None:
            continue
        counts["scored"] += 1
        counts["anomalies"] += int(event.anomaly)
        if args.only_anomalies and not event.anomaly:
            continue
        record = {"index": event.index, "line": row.line}
        if stream_id is not None:
            record["stream"] = stream_id
        if row.timestamp is not None:
            record["timestamp"] = row.timestamp
        record["score"] = event.score
        record["anomaly"] = event.anomaly
        out.write(json.dumps(record) + "\n")
        if flush:
            out.flush()
    out.flush()
    seconds = time.perf_counter() - started
    return {
        **counts,
        "bundle": scorer.manifest.name,
        "threshold": scorer.threshold,
        "seconds": round(seconds, 3),
        "samples_per_s": round(counts["samples"] / seconds, 1) if seconds > 0 else None,
    }


if __name__ == "__main__":
    sys.exit(main())
