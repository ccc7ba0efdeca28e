"""Dynamic batching: requests that arrive together share one `score` call.

Each request becomes a `Job` in a FIFO queue. One loop on the event loop takes the oldest job,
waits up to `max_wait_ms` (counted as below) for others that can share its call (same per-input
columns and call options, and a model whose rewards do not depend on the rest of the call), adds
them in arrival order while the batch stays within `max_batch_tokens`, and hands the batch to a
single worker thread, so the event loop stays free for /health and for new requests while the
model runs. Jobs that arrive during a call are the next batch. The worker scores a batch in
forward passes (whole requests, shortest first, `pass_tokens` padded tokens at most) and each
pass's jobs are answered as soon as it ends, so their callers can send their next requests while
the rest is scored. Each job's slice of the output goes back to its caller, in its own order.

A lone client does not pay the wait: the oldest job waits only while other requests are being
checked on their way in, or when the last batch held several jobs (a sign of concurrent callers).
The wait runs from the later of the job's arrival and the last call's delivery, and ends as soon
as the batch holds as many jobs as the last call plus those queued during it (with nothing on its
way in). Concurrent callers that each send their next request once the last is answered are thus
gathered into one call; waiting only from arrival, the jobs that arrive during a call would leave
without the callers of that call, and two half batches would alternate, each paying a small
call's cost per input.

The queue is bounded by inputs (`max_queue_items`): a request that would overflow it is refused
(`QueueFull`), so memory stays bounded under any load. A job whose caller has gone is removed from
the queue, or, if its call has started, its result is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Hashable

from nexus.batching import token_budget_batches
from nexus.outputs import RewardOutput

log = logging.getLogger("nexus.serve")

# (prompts, responses, columns, options) -> the output of one `score` call.
ScoreFn = Callable[[list, list, dict, dict], RewardOutput]


class QueueFull(Exception):
    """The queue already holds `max_queue_items` inputs; retry later."""


class CallerGone(Exception):
    """The client disconnected before its result was ready."""


@dataclass(eq=False)
class Job:
    """One request's inputs and how to score them.

    Attributes:
        prompts, responses: the inputs, in the request's order.
        sizes: each input's length (`RewardModel.input_lengths`), for the token budget.
        columns: the family's per-input columns given with the request (one entry per input).
        options: keywords for the whole call (call options, `normalize`).
        group: jobs with equal groups may share a `score` call; None: scored alone.
        finish: turns the job's slice of the output into its result (run on the worker thread);
            None: the slice itself.
        call: when set, the job is this call instead (scored alone), e.g. a judge's `compare`.
    """

    prompts: list
    responses: list
    sizes: list[int]
    columns: dict[str, list] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    group: Hashable | None = None
    finish: Callable[[RewardOutput], Any] | None = None
    call: Callable[[], Any] | None = None
    future: asyncio.Future | None = None
    arrival: float = 0.0
    state: str = "new"  # new -> queued -> running -> done, or cancelled

    @property
    def items(self) -> int:
        return len(self.prompts)

    @property
    def tokens(self) -> int:
        return sum(self.sizes)


class Batcher:
    """The queue, the batching loop and the model's worker thread (see the module docstring)."""

    def __init__(self, score: ScoreFn, *, batching: bool = True, max_batch_tokens: int = 16384,
                 max_wait_ms: float = 20.0, max_queue_items: int = 4096, pass_tokens: int | None = None,
                 max_padding: float | None = None):
        self.score = score
        self.batching = batching
        self.max_batch_tokens = max_batch_tokens
        self.pass_tokens, self.max_padding = pass_tokens, max_padding
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue_items = max_queue_items
        self.queue: deque[Job] = deque()
        self.queued_items = 0
        self.running_items = 0
        self.counts = {"accepted": 0, "completed": 0, "failed": 0, "cancelled": 0, "rejected": 0,
                       "batches": 0, "batched_jobs": 0}
        self.busy_seconds = 0.0  # time the worker spent scoring
        # Requests admitted but not yet queued (being checked), and how many jobs the last batch
        # held: the batcher waits for company only when either says that others are coming.
        self.arriving = 0
        self._last_batch_jobs = 0
        # Jobs expected in the next call (the last call's, whose callers may return, and those
        # queued while it ran) and when the last call's results went back.
        self._expected = 0
        self._delivered_at = 0.0
        self._accepted_by_first_delivery: int | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nexus-score")
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    # -- lifecycle (on the event loop) --------------------------------------------------------

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="nexus-batcher")

    async def close(self) -> None:
        """Stop the loop (jobs still queued fail) and the worker thread, after its current call."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self.queue:
            job = self.queue.popleft()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown)

    def stats(self) -> dict[str, int]:
        return {**self.counts, "queued_items": self.queued_items, "running_items": self.running_items,
                "queued_jobs": len(self.queue), "busy_seconds": round(self.busy_seconds, 3)}

    # -- callers ------------------------------------------------------------------------------

    def check_room(self, items: int) -> None:
        """QueueFull unless `items` more inputs fit the queue (an empty queue takes any request, so
        one no larger than the request limits is never refused forever)."""
        if self.queued_items and self.queued_items + items > self.max_queue_items:
            self.counts["rejected"] += 1
            raise QueueFull(f"{self.queued_items} inputs are queued; the limit is {self.max_queue_items}")

    def submit(self, job: Job) -> Job:
        """Queue `job`, or raise QueueFull if its inputs do not fit (`check_room`)."""
        self.check_room(job.items)
        job.future = asyncio.get_running_loop().create_future()
        job.arrival, job.state = time.monotonic(), "queued"
        self.queue.append(job)
        self.queued_items += job.items
        self.counts["accepted"] += 1
        self._wake.set()
        return job

    async def result(self, job: Job, gone: asyncio.Future | None = None) -> Any:
        """The job's result, or CallerGone (and the job cancelled) if `gone` completes first."""
        try:
            waiters = {job.future} if gone is None else {job.future, gone}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            self.cancel(job)
            raise
        if job.future.done():
            return job.future.result()
        self.cancel(job)
        raise CallerGone()

    def cancel(self, job: Job) -> None:
        """Drop a job whose caller has gone: out of the queue, or its result discarded if running."""
        if job.state == "queued":
            self.queue.remove(job)
            self.queued_items -= job.items
        elif job.state != "running":
            return
        job.state = "cancelled"
        self.counts["cancelled"] += 1
        if not job.future.done():
            job.future.cancel()

    # -- the loop -----------------------------------------------------------------------------

    def _select(self, first: Job) -> tuple[list[Job], bool]:
        """The jobs to score with `first` (same group, arrival order, within the token budget) and
        whether the batch is full."""
        if not self.batching or first.group is None:
            return [first], True
        batch, tokens = [first], first.tokens
        for job in list(self.queue)[1:]:
            if job.group != first.group:
                continue
            if tokens + job.tokens > self.max_batch_tokens:
                return batch, True
            batch.append(job)
            tokens += job.tokens
        return batch, tokens >= self.max_batch_tokens

    async def _loop(self) -> None:
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            first = self.queue[0]
            batch, full = self._select(first)
            # Callers of the last call come back soon after their results: waiting for them (up to
            # max_wait from the delivery) keeps concurrent clients in one call rather than letting
            # two half batches alternate, each formed while the other runs. Once every expected job
            # is here and none is on its way in, the batch goes at once.
            expecting = self.arriving > 0 or len(batch) < self._expected
            delay = max(first.arrival, self._delivered_at) + self.max_wait - time.monotonic()
            if not full and delay > 0 and expecting and (self.arriving > 0 or self._last_batch_jobs > 1):
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                continue  # select again: more may have come, or `first` may have gone
            for job in batch:
                self.queue.remove(job)
                job.state = "running"
            items = sum(job.items for job in batch)
            self.queued_items -= items
            self.running_items += items
            self.counts["batches"] += 1
            self.counts["batched_jobs"] += len(batch)
            self._last_batch_jobs = len(batch)
            accepted_at_start, self._accepted_by_first_delivery = self.counts["accepted"], None
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self._run, batch, partial(loop.call_soon_threadsafe,
                                                                                     self._deliver))
            except Exception as err:  # a fault in the batching itself: fail the jobs left, keep serving
                log.exception("scoring a batch of %d requests failed", len(batch))
                for job in batch:
                    if job.state == "running":
                        self._deliver(job, False, err)
            finally:
                self.running_items -= items
            # The next call expects this call's callers back, and the requests that came from others
            # while it ran before its first answers went out (later ones may be its callers' next).
            first_answer = self._accepted_by_first_delivery
            arrived = (self.counts["accepted"] if first_answer is None else first_answer) - accepted_at_start
            self._expected = len(batch) + arrived
            self._delivered_at = time.monotonic()

    def _deliver(self, job: Job, ok: bool, value: Any) -> None:
        if self._accepted_by_first_delivery is None:
            self._accepted_by_first_delivery = self.counts["accepted"]
        if job.state != "running":  # cancelled, or already failed by the loop
            return
        job.state = "done"
        self.counts["completed" if ok else "failed"] += 1
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)

    # -- the worker thread ----------------------------------------------------------------------

    def _run(self, batch: list[Job], deliver: Callable[[Job, bool, Any], None]) -> None:
        start = time.perf_counter()
        try:
            self._run_batch(batch, deliver)
        finally:
            self.busy_seconds += time.perf_counter() - start

    def _passes(self, jobs: list[Job]) -> list[list[Job]]:
        """`jobs` cut into forward passes (each request whole; rows x longest row <= pass_tokens, at
        most max_padding of it padding), shortest first, so that the first answers go out early."""
        if self.pass_tokens is None or len(jobs) <= 1:
            return [jobs]
        groups = token_budget_batches([max(job.sizes) for job in jobs], self.pass_tokens, self.max_padding,
                                      rows=[job.items for job in jobs], tokens=[job.tokens for job in jobs])
        return [[jobs[i] for i in sorted(group)] for group in reversed(groups)]

    def _run_batch(self, batch: list[Job], deliver: Callable[[Job, bool, Any], None]) -> None:
        """Score the batch a forward pass at a time and `deliver` (job, ok, result or exception) as
        each pass ends, so that its callers can send their next requests while the rest is scored.
        A failed shared call is retried job by job, so that a request the model cannot score fails
        alone."""
        live = [job for job in batch if job.state != "cancelled"]  # a cancelled job's caller has its answer
        for jobs in self._passes(live):
            for job, (ok, value) in zip(jobs, self._run_shared(jobs)):
                deliver(job, ok, value)

    def _run_shared(self, jobs: list[Job]) -> list[tuple[bool, Any]]:
        """(ok, result or exception) per job, from one `score` call over all of them."""
        if len(jobs) == 1:
            return [self._run_alone(jobs[0])]
        first = jobs[0]
        try:
            out = self.score([p for job in jobs for p in job.prompts], [r for job in jobs for r in job.responses],
                             {name: [v for job in jobs for v in job.columns[name]] for name in first.columns},
                             first.options)
        except Exception:
            return [self._run_alone(job) for job in jobs]
        results, start = [], 0
        for job in jobs:
            results.append(self._finish(job, out.select(slice(start, start + job.items))))
            start += job.items
        return results

    def _run_alone(self, job: Job) -> tuple[bool, Any]:
        if job.state == "cancelled":
            return False, CallerGone()
        try:
            if job.call is not None:
                return True, job.call()
            return self._finish(job, self.score(job.prompts, job.responses, job.columns, job.options))
        except Exception as err:
            return False, err

    @staticmethod
    def _finish(job: Job, out: RewardOutput) -> tuple[bool, Any]:
        try:
            return True, out if job.finish is None else job.finish(out)
        except Exception as err:
            return False, err
