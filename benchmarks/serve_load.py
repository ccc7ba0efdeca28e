"""Load test of the reward server (`python -m nexus.serve`) on loopback, against in-process `score`.

python -m benchmarks.serve_load [--backbone minilm] [--requests 256] [--clients 1 8 32 128]
                                [--items-per-request 1] [--rounds 3] [--max-seconds 90] [--queue-limit 32]
                                [--variant KEY=VALUE ...]

A scalar RM on `--backbone` (random head: speed does not depend on the weights) is saved and
served by two subprocesses, one with dynamic batching and one without (`batching=false`: each
request is its own `score` call), so each server's memory is its own and clients and servers
compete for the same cores, as they would on one host. The inputs are arithmetic prompts and
responses of mixed lengths (`common.mixed_pairs`, the chosen response of each pair, so no two
inputs share a prompt and prompt sharing cannot favour either side); each request is one OpenRLHF
`/get_reward` body of `--items-per-request` queries. For each number of concurrent clients, the
clients send `--requests` requests in all (each client one at a time on its own keep-alive
connection, stopping after `--max-seconds`); the client side records throughput (responses/s)
and p50/p99 latency.

Baseline, in the same run: in-process `rm.score` on all the inputs in one call (the model's own
batching, length-sorted over every input), as items/s. Two more in-process references: the same
call in forward passes of the server's size (`score(max_tokens=, max_padding=)` as the server
calls it; /info gives the size), which isolates what HTTP and coalescing cost, and `rm.score` on
one input at a time, the model's own speed without batching. Their quotient, batched over one at
a time in-process, is what batching gains the model itself on this hardware, before any HTTP: a
server's speedup over its unbatched twin can exceed it only by the overhead per request that the
unbatched server pays more often. This machine's speed drifts, so each case runs `--rounds`
times, each round measuring the in-process rates, the batching server and the server without
batching back to back; a ratio is taken within a round and the median (and range) over rounds is
reported. `--variant KEY=VALUE...` adds a third server, the batching one with other settings, to
the same rounds, for a paired comparison of settings.

Memory: the batching server's peak resident memory above its level after
warm-up (sampled every 5 ms), at each concurrency, and a third server's with the most clients
against a queue limit of `--queue-limit` inputs, whose clients retry a refused request (503)
after 100 ms: the peak stays bounded however many clients wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

from benchmarks.common import Row, benchmark_parser, mixed_pairs, report, threads_note
from nexus.backbones import load_backbone
from nexus.models.scalar import ScalarRewardModel


def parser():
    p = benchmark_parser(__doc__, repeats=None)
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--requests", type=int, default=256, help="requests per measured case")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--items-per-request", type=int, default=1)
    p.add_argument("--max-seconds", type=float, default=90.0, help="stop a case after this long")
    p.add_argument("--queue-limit", type=int, default=32, help="max_queue_items of the memory case")
    p.add_argument("--max-wait-ms", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=3, help="interleaved measurements per case; medians reported")
    p.add_argument("--server-threads", type=int, default=None,
                   help="the servers' torch threads (serve `threads=`); default: torch's, one per core")
    p.add_argument("--variant", nargs="+", metavar="KEY=VALUE", default=None,
                   help="also measure, in the same rounds, a batching server with these settings (e.g. "
                        "forward_max_tokens=4096), against in-process and against the default batching server")
    return p


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m nexus.serve` in a subprocess, ready once /health answers 200."""

    def __init__(self, checkpoint: Path, env: dict | None = None, **settings):
        import httpx

        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        args = [f"{k}={v}" for k, v in settings.items()]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nexus.serve", f"checkpoint={checkpoint}", f"port={port}", "log_level=warning",
             *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=None if env is None else {**os.environ, **env})
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with status {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready in 300 s")
            time.sleep(0.2)
        self.ps = psutil.Process(self.process.pid)

    def stats(self) -> dict:
        """The batcher's counters from /health (calls made, seconds the model spent scoring)."""
        import httpx

        return httpx.get(f"{self.url}/health").json()

    def info(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/info").json()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)


class PeakOf:
    """Peak resident memory (MiB) of another process above `base` bytes, sampled by a thread."""

    def __init__(self, process: psutil.Process, base: int):
        self.process, self.base, self.peak = process, base, base
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.005)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2 ** 20


class Connection:
    """A minimal keep-alive HTTP/1.1 client on one socket: POST a JSON body, read the status and
    body. The load generator shares the server's cores, so it must cost little per request (a
    general client's connection pool costs more than the server's parsing at 128 clients)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        payload = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def drive(url: str, bodies: list[dict], clients: int, max_seconds: float) -> dict:
    """`clients` concurrent clients, each on its own connection, sending `bodies` one request at a
    time; 503s are retried after 100 ms. Returns wall seconds, per-request latencies and 503s."""
    host, port = url.removeprefix("http://").split(":")
    encoded = iter([json.dumps(body).encode() for body in bodies])
    latencies, refused = [], 0
    deadline = time.monotonic() + max_seconds

    async def client():
        nonlocal refused
        connection = Connection(host, int(port))
        for body in encoded:
            if time.monotonic() > deadline:
                break
            start = time.perf_counter()
            while True:
                status, payload = await connection.post("/get_reward", body)
                if status != 503:
                    break
                refused += 1
                await asyncio.sleep(0.1)
            if status != 200:
                raise RuntimeError(f"/get_reward answered {status}: {payload[:200]!r}")
            latencies.append(time.perf_counter() - start)
        await connection.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {"seconds": time.perf_counter() - start, "latencies": sorted(latencies), "refused": refused}


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def in_process_rate(rm, prompts: list, responses: list, **options) -> float:
    start = time.perf_counter()
    rm.score(prompts, responses, **options)
    return len(prompts) / (time.perf_counter() - start)


def one_at_a_time_rate(rm, prompts: list, responses: list) -> float:
    start = time.perf_counter()
    for prompt, response in zip(prompts, responses):
        rm.score([prompt], [response])
    return len(prompts) / (time.perf_counter() - start)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x (range {min(values):.2f}-{max(values):.2f})"


def measure_clients(args, rm, prompts, responses, bodies, servers, bases, clients, passes, baseline) -> list[Row]:
    """Rounds at `clients` concurrent clients: in-process rates, then each server, back to back."""
    k = args.items_per_request
    rates = {name: [] for name in servers}
    ratios, like_for_like, speedups, ceilings, against = [], [], [], [], []
    latencies, variant_latencies, peaks, calls, busy = [], [], [], [], []
    for _ in range(args.rounds):  # interleaved, so that drift in this machine's speed hits all alike
        local = in_process_rate(rm, prompts, responses)
        same_passes = in_process_rate(rm, prompts, responses, **passes)
        alone = one_at_a_time_rate(rm, prompts, responses)
        baseline.append(local)
        for name, server in servers.items():
            before = server.stats()
            with PeakOf(server.ps, bases[name]) as peak:
                result = asyncio.run(drive(server.url, bodies, clients, args.max_seconds))
            rates[name].append(len(result["latencies"]) / result["seconds"])
            if name == "variant":
                variant_latencies += result["latencies"]
            if name == "batching":
                after = server.stats()
                latencies += result["latencies"]
                peaks.append(peak.mib)
                calls.append(after["batches"] - before["batches"])
                busy.append((after["busy_seconds"] - before["busy_seconds"]) / result["seconds"])
        ratios.append(rates["batching"][-1] * k / local)
        like_for_like.append(rates["batching"][-1] * k / same_passes)
        speedups.append(rates["batching"][-1] / rates["no batching"][-1])
        ceilings.append(local / alone)
        if "variant" in servers:
            against.append((rates["variant"][-1] * k / local, rates["variant"][-1] / rates["batching"][-1]))
    latencies.sort()
    variant_latencies.sort()
    median = {name: statistics.median(values) for name, values in rates.items()}
    rows = [Row("serve_load", f"batching, {clients} clients", len(bodies) / median["batching"],
                f"{median['batching']:.1f} responses/s", f"{spread(ratios)} in-process",
                note=f"{spread(like_for_like)} in-process in the server's passes; p50 "
                     f"{percentile(latencies, 0.5) * 1e3:.0f} ms, p99 {percentile(latencies, 0.99) * 1e3:.0f} ms; "
                     f"peak server RSS +{max(peaks):.0f} MiB; {statistics.median(calls):.0f} score calls, model busy "
                     f"{statistics.median(busy):.0%} of the time"),
            Row("serve_load", f"no batching, {clients} clients", len(bodies) / median["no batching"],
                f"{median['no batching']:.1f} responses/s", f"batching {spread(speedups)} this",
                note=f"in-process, batched over one at a time: {spread(ceilings)}")]
    if "variant" in servers:
        rows.append(Row("serve_load", f"batching with {' '.join(args.variant)}, {clients} clients",
                        len(bodies) / median["variant"], f"{median['variant']:.1f} responses/s",
                        f"{spread([a for a, _ in against])} in-process",
                        note=f"{spread([b for _, b in against])} the batching server; p50 "
                             f"{percentile(variant_latencies, 0.5) * 1e3:.0f} ms, p99 "
                             f"{percentile(variant_latencies, 0.99) * 1e3:.0f} ms"))
    print("\n".join("  " + row.line() for row in rows), flush=True)
    return rows


def run(args) -> list[Row]:
    torch.manual_seed(0)
    rm = ScalarRewardModel(load_backbone(args.backbone), head_hidden=0, dropout=0.0).eval()
    k = args.items_per_request
    pairs = mixed_pairs(args.requests * k, seed=0)  # one response per prompt: nothing to share
    prompts, responses = [p.prompt for p in pairs], [p.chosen for p in pairs]
    bodies = [{"query": [p + r for p, r in zip(prompts[i:i + k], responses[i:i + k])], "prompts": prompts[i:i + k]}
              for i in range(0, len(prompts), k)]
    rm.score(prompts[:8], responses[:8])  # warm up
    rows, baseline = [], []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = rm.save_pretrained(Path(tmp) / "rm")
        threads = {} if args.server_threads is None else {"threads": args.server_threads}
        servers = {"batching": ServerProcess(checkpoint, max_wait_ms=args.max_wait_ms, **threads),
                   "no batching": ServerProcess(checkpoint, batching="false", max_wait_ms=args.max_wait_ms, **threads)}
        if args.variant:  # a third server, the batching one with other settings, in the same rounds
            settings = dict(setting.split("=", 1) for setting in args.variant)
            servers["variant"] = ServerProcess(checkpoint, **{"max_wait_ms": args.max_wait_ms, **threads, **settings})
        try:
            bases = {}
            for name, server in servers.items():
                asyncio.run(drive(server.url, bodies[:16], 4, args.max_seconds))  # warm up
                bases[name] = server.ps.memory_info().rss
            limits = servers["batching"].info()["limits"]  # how the server cuts a call into forward passes
            passes = {"max_tokens": limits["forward_max_tokens"], "max_padding": limits["max_padding"]}
            for clients in args.clients:
                rows += measure_clients(args, rm, prompts, responses, bodies, servers, bases, clients, passes,
                                        baseline)
        finally:
            for server in servers.values():
                server.stop()
        clients = max(args.clients)
        server = ServerProcess(checkpoint, max_queue_items=args.queue_limit,
                               max_wait_ms=args.max_wait_ms, **threads)
        try:
            asyncio.run(drive(server.url, bodies[:16], 4, args.max_seconds))
            with PeakOf(server.ps, server.ps.memory_info().rss) as peak:
                result = asyncio.run(drive(server.url, bodies, clients, args.max_seconds))
            rate = len(result["latencies"]) / result["seconds"]
            rows.append(Row("serve_load", f"queue limit {args.queue_limit} inputs, {clients} clients",
                            result["seconds"], f"{rate:.1f} responses/s", "",
                            note=f"peak server RSS +{peak.mib:.0f} MiB; {result['refused']} requests refused (503) "
                                 "and retried"))
        finally:
            server.stop()
    local = statistics.median(baseline)
    rows.insert(0, Row("serve_load", f"in-process rm.score, {len(prompts)} inputs", len(prompts) / local,
                       f"{local:.1f} items/s", "baseline", note=f"{args.backbone}, {threads_note()}, median of "
                                                                f"{len(baseline)} runs"))
    return report(rows, f"serve_load: {args.backbone}, {k} item(s) per request, {len(bodies)} requests per case, "
                        f"{args.rounds} rounds")


def main(argv=None) -> list[Row]:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    main()
