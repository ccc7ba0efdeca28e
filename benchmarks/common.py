"""Helpers shared by the benchmarks: timing, memory, inputs, result rows."""

from __future__ import annotations

import argparse
import re
import threading
import time
from dataclasses import dataclass

import psutil
import torch


def best_seconds(fn, repeats: int) -> float:
    """The fastest of `repeats` timed calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


class PeakRSS:
    """Peak resident memory (MiB) above its level at entry, sampled every `interval` s by a thread.

    Resident memory rather than `tracemalloc` (which sees only Python's allocator, not torch's
    tensors) or `getrusage` max RSS (a high-water mark for the whole process, blind to a later,
    smaller peak). Freed memory the allocator keeps can hide part of a later peak.
    """

    def __init__(self, interval: float = 0.005):
        self.interval, self.mib = interval, 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        process, peak = psutil.Process(), 0
        while not self._stop.is_set():
            peak = max(peak, process.memory_info().rss)
            self._stop.wait(self.interval)
        self.mib = max(0, peak - self._start) / 2 ** 20

    def __enter__(self) -> "PeakRSS":
        self._start = psutil.Process().memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Row:
    """One measured case: what `run_all` collects into benchmarks/results.md."""

    benchmark: str
    case: str
    seconds: float
    throughput: str
    ratio: str = ""  # against the baseline measured in the same run, e.g. "3.10x naive loop"
    roofline: str = ""  # "x GFLOP/s, y% of peak", or "" where no FLOPs apply
    note: str = ""

    def with_peak(self, peak: float) -> "Row":
        """This row with its fraction of peak recomputed against `peak` (roofline "x GFLOP/s, ...")."""
        match = re.match(r"([0-9.]+) GFLOP/s", self.roofline)
        if match:
            gflops = float(match.group(1))
            self.roofline = f"{gflops:.1f} GFLOP/s, {gflops / peak:.0%} of peak"
        return self

    def line(self) -> str:
        parts = [f"{self.case:<40}", f"{self.seconds:8.3f} s", f"{self.throughput:>20}", self.ratio,
                 self.roofline, self.note]
        return "  ".join(p for p in parts if p)


def report(rows: list[Row], header: str) -> list[Row]:
    """Print a benchmark's header and rows; return the rows."""
    print(header)
    for row in rows:
        print("  " + row.line())
    return rows


def markdown(rows: list[Row]) -> str:
    """The rows as one Markdown table."""
    lines = ["| benchmark | case | seconds | throughput | vs baseline | roofline | note |",
             "|---|---|---|---|---|---|---|"]
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731 ("max |reward diff|" must not split a cell)
    lines += [f"| {cell(r.benchmark)} | {cell(r.case)} | {r.seconds:.3f} | {cell(r.throughput)} | {cell(r.ratio)} | "
              f"{cell(r.roofline)} | {cell(r.note)} |" for r in rows]
    return "\n".join(lines)


def threads_note() -> str:
    return f"{torch.get_num_threads()} threads"


# Mixed lengths for scoring: short in-distribution problems, longer shifted ones, a tail of long ones.
LENGTH_MIX = (("id", 0.45), ("shifted", 0.45), ("long", 0.10))


def mixed_pairs(n_pairs: int, seed: int = 0) -> list:
    """`n_pairs` arithmetic preference pairs of mixed lengths (LENGTH_MIX), deterministic by seed."""
    from nexus.tasks.arithmetic import SPLITS, ArithmeticConfig, generate

    configs = {**SPLITS, "long": ArithmeticConfig(digits=3, min_steps=6, max_steps=10)}
    pairs = []
    for i, (split, share) in enumerate(LENGTH_MIX):
        k = n_pairs - len(pairs) if i == len(LENGTH_MIX) - 1 else round(n_pairs * share)
        pairs += generate(k, seed=seed + i, cfg=configs[split])["pairwise"][:k] if k > 0 else []
    return pairs


def pair_inputs(pairs) -> tuple[list[str], list[str]]:
    """Prompts and responses with each pair's chosen at 2i and its rejected at 2i + 1."""
    prompts = [p.prompt for p in pairs for _ in range(2)]
    responses = [r for p in pairs for r in (p.chosen, p.rejected)]
    return prompts, responses


def benchmark_parser(doc: str, repeats: int | None = 3) -> argparse.ArgumentParser:
    """The options every benchmark takes: `--peak` (run_all passes the peak it measured once) and,
    unless `repeats` is None, `--repeats` (timed calls; the fastest counts)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    if repeats is not None:
        p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--peak", type=float, default=None, help="GFLOP/s peak (default: measured now)")
    return p
