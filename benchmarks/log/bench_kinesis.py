"""Benchmark the Kinesis event log's client path against moto's server on loopback.

Run: ``python benchmarks/log/bench_kinesis.py``, options: ``--events N`` (default
100,000), ``--batch N`` (rows per append, default 10,000), ``--partitions N`` (default 4).

This measures Fluvial's side of the wire (routing, JSON encoding, PutRecords batching,
DynamoDB acknowledgements, GetRecords paging, decoding to Arrow) plus moto, an emulator
written in Python that runs on the same machine: it says nothing about AWS, where a
shard takes 1 MiB/s or 1,000 records/s in and 2 MiB/s out. The codec rows show how much
of the time is Fluvial's own encoding and decoding. moto's server runs in a separate
process, so the "client CPU" column (this process's CPU time, every thread) is what the
client path would cost against AWS. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``fluvial`` and ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.bench_log import clickstream
from fluvial.log.kafka.codec import decode_rows, encode_rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)

    if importlib.util.find_spec("moto") is None:
        print("skipped: needs moto's server (pip install -e '.[dev]')")
        return 0

    from fluvial.log.kinesis import KinesisLog

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    os.environ.pop("AWS_PROFILE", None)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port)
        data = clickstream(args.events)
        log = KinesisLog(
            endpoint_url=f"http://127.0.0.1:{port}",
            resource_prefix=f"bench{uuid.uuid4().hex[:6]}",
            partitions=args.partitions,
        )
        log.create_topic("events")
        log.append("events", data.slice(0, 1), key="user_id")  # the writer's lease
        start_calls = log.writer.calls

        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(1, args.events, args.batch):
            log.append("events", data.slice(start, args.batch), key="user_id")
        append_s, append_cpu = time.perf_counter() - t0, time.process_time() - c0
        calls = log.writer.calls - start_calls
        info = log.topic("events")
        assert info.records == args.events, info

        t0, c0 = time.perf_counter(), time.process_time()
        got = 0
        for part in info.partitions:
            offset = 0
            while offset < part.end_offset:
                chunk = log.read("events", part.partition, offset, 10_000)
                offset += chunk.num_rows
                got += chunk.num_rows
        read_s, read_cpu = time.perf_counter() - t0, time.process_time() - c0
        assert got == args.events

        t0, c0 = time.perf_counter(), time.process_time()
        values = encode_rows(data)
        encode_s, encode_cpu = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        decode_rows(values, data.schema, max_value_bytes=max(map(len, values)))
        decode_s, decode_cpu = time.perf_counter() - t0, time.process_time() - c0
        log.close()
    finally:
        server.terminate()
        server.wait(10)

    rows = [
        ("append (PutRecords + DynamoDB)", args.events / append_s, args.events / append_cpu),
        ("read (GetRecords, decoded)", args.events / read_s, args.events / read_cpu),
        ("codec alone: encode", args.events / encode_s, args.events / encode_cpu),
        ("codec alone: decode", args.events / decode_s, args.events / decode_cpu),
    ]
    print(
        f"{args.events:,} clickstream rows, {info.bytes / args.events:.0f} bytes/row as JSON, "
        f"{args.partitions} shards, appends of {args.batch:,} rows, {calls} PutRecords calls"
    )
    print(f"{'measure':<34} {'events/s':>12} {'per client CPU s':>17}")
    for name, rate, cpu_rate in rows:
        print(f"{name:<34} {rate:>12,.0f} {cpu_rate:>17,.0f}")
    print(
        json.dumps(
            {
                "events": args.events,
                "put_records_calls": calls,
                "append_events_per_s": round(args.events / append_s),
                "read_events_per_s": round(args.events / read_s),
                "append_events_per_client_cpu_s": round(args.events / append_cpu),
                "read_events_per_client_cpu_s": round(args.events / read_cpu),
                "encode_events_per_s": round(args.events / encode_s),
                "decode_events_per_s": round(args.events / decode_s),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
