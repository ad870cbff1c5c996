"""The one timing helper: latency of one caller, throughput of several threads or tasks,
client cost (sync calls, or async calls awaited on one event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from time import perf_counter, process_time, thread_time
from typing import TypeVar

Call = Callable[[], object]
"""One operation, ready to run again and again (it keeps whatever state it needs)."""
AsyncCall = Callable[[], Awaitable[object]]
"""The async twin of Call: each call returns a new awaitable."""

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class Latency:
    """Median and 95th percentile of `iterations` timed calls, in milliseconds."""

    iterations: int
    median_ms: float
    p95_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        """Summarise samples given in seconds."""
        milliseconds = [sample * 1000 for sample in seconds]
        p95 = statistics.quantiles(milliseconds, n=100, method="inclusive")[94]
        return cls(len(milliseconds), statistics.median(milliseconds), p95)


@dataclass(frozen=True, slots=True)
class Throughput:
    """`operations` completed by `threads` threads (or tasks) in `seconds` of wall time,
    using `cpu_seconds` of the process's CPU time (every thread's) meanwhile."""

    threads: int
    operations: int
    seconds: float
    cpu_seconds: float = 0.0

    @property
    def per_second(self) -> float:
        """Operations per second over all threads."""
        return self.operations / self.seconds

    @property
    def cpu_us_per_operation(self) -> float:
        """The client process's CPU per operation, in microseconds."""
        return self.cpu_seconds / self.operations * 1_000_000


@dataclass(frozen=True, slots=True)
class ClientCost:
    """What timed calls cost the caller: CPU of the calling thread, and their latency.

    Thread CPU time leaves out the time spent blocked on the socket (the server's share),
    and the work of any other thread, such as a connection pool's workers.
    """

    cpu_seconds_per_call: tuple[float, ...]
    """Calling-thread CPU per call, in each block of calls."""
    latency: Latency

    @property
    def cpu_us_per_call(self) -> float:
        """The median over the blocks, in microseconds: a block that another process
        disturbed (caches, a shared core) moves it little."""
        return statistics.median(self.cpu_seconds_per_call) * 1_000_000


def paired_ratio(tops: Sequence[float], bottoms: Sequence[float]) -> float:
    """The median over the rounds of top / bottom, each pair measured in the same round.

    measure_client_cost runs one block of each side per round, back to back (the
    tasks-vs-threads section one run of each): the two of a round meet the same state of the
    machine (a slower phase lasts seconds and takes every side's blocks of its rounds with
    it), so their ratio cancels it, where a ratio of the two medians mixes blocks of
    different rounds. Measured here with four sides running identical add_turn calls, six
    runs: the ratio of medians of two identical sides ranged 0.87-1.10, this one 0.94-1.07.
    """
    if len(tops) != len(bottoms):
        raise ValueError(f"not one run: {len(tops)} and {len(bottoms)} rounds")
    return statistics.median(top / bottom for top, bottom in zip(tops, bottoms, strict=True))


def measure_latency(call: Call, *, iterations: int, warmup: int) -> Latency:
    """Run `call` `warmup` times untimed, then time each of `iterations` calls."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(iterations):
        start = perf_counter()
        call()
        samples.append(perf_counter() - start)
    return Latency.of(samples)


def measure_throughput(
    calls: Sequence[Call], *, operations_per_thread: int, warmup_per_thread: int = 0
) -> Throughput:
    """One thread per entry of `calls`, each running its call `operations_per_thread` times.

    Each thread first runs `warmup_per_thread` untimed calls (connections get opened then);
    the clock starts when every thread is ready and stops when the last one finishes. The
    first exception raised in a thread is re-raised here.
    """
    ready = threading.Barrier(len(calls) + 1)
    errors: list[BaseException] = []

    def work(call: Call) -> None:
        try:
            for _ in range(warmup_per_thread):
                call()
            ready.wait()
            for _ in range(operations_per_thread):
                call()
        except threading.BrokenBarrierError:
            return  # another thread failed first; its error is the one reported
        except BaseException as error:
            errors.append(error)
            ready.abort()

    threads = [threading.Thread(target=work, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait()
    start, cpu_start = perf_counter(), process_time()
    for thread in threads:
        thread.join()
    elapsed, cpu = perf_counter() - start, process_time() - cpu_start
    if errors:
        raise errors[0]
    return Throughput(len(calls), len(calls) * operations_per_thread, elapsed, cpu)


def measure_async_throughput(
    runner: asyncio.Runner,
    calls: Sequence[AsyncCall],
    *,
    operations_per_task: int,
    warmup_per_task: int = 0,
) -> Throughput:
    """The async twin of measure_throughput: one task per entry of `calls`, on `runner`'s loop.

    Each task first awaits `warmup_per_task` untimed calls; the clock starts when every task
    is ready and stops when the last one finishes. The first exception is raised here.
    """

    async def measure() -> Throughput:
        ready = asyncio.Barrier(len(calls) + 1)

        async def work(call: AsyncCall) -> None:
            try:
                for _ in range(warmup_per_task):
                    await call()
            except BaseException:
                await ready.abort()
                raise
            await ready.wait()
            for _ in range(operations_per_task):
                await call()

        tasks = [asyncio.create_task(work(call)) for call in calls]
        with contextlib.suppress(asyncio.BrokenBarrierError):
            await ready.wait()
        start, cpu_start = perf_counter(), process_time()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        elapsed, cpu = perf_counter() - start, process_time() - cpu_start
        errors = [error for error in outcomes if isinstance(error, BaseException)]
        # A task that failed broke the barrier for the others: its error is the one reported.
        errors.sort(key=lambda error: isinstance(error, asyncio.BrokenBarrierError))
        if errors:
            raise errors[0]
        return Throughput(len(calls), len(calls) * operations_per_task, elapsed, cpu)

    return runner.run(measure())


def measure_client_cost(
    sides: Sequence[Sequence[Call]],
    *,
    warmup: int,
    blocks: int,
    between_blocks: Call | None = None,
) -> list[ClientCost]:
    """The client cost of each side's calls, run once each, side by side on this thread.

    Each side first runs its first `warmup` calls untimed; the rest are split into
    `blocks` blocks, run side after side, in reverse order every other round (A B, B A...),
    so that drift (caches, a growing table, a busier machine) falls on every side alike.
    `between_blocks` runs untimed after each block (say, to drop what a mock recorded).
    Objects that exist before the first block are frozen out of garbage collection
    meanwhile, so a collection costs what the calls themselves left, whatever else the
    process holds. Raises ValueError if a side has fewer timed calls than `blocks`.
    """
    return _measure(sides, _timed_calls, warmup=warmup, blocks=blocks, between=between_blocks)


def measure_async_client_cost(
    runner: asyncio.Runner,
    sides: Sequence[Sequence[AsyncCall]],
    *,
    warmup: int,
    blocks: int,
    between_blocks: Call | None = None,
) -> list[ClientCost]:
    """measure_client_cost for async calls: each block is one task on `runner`'s loop that
    awaits its calls one after another, so the loop's own work is the client's too."""

    def run_block(calls: Sequence[AsyncCall], samples: list[float]) -> float:
        return runner.run(_timed_async_calls(calls, samples))

    return _measure(sides, run_block, warmup=warmup, blocks=blocks, between=between_blocks)


def _measure(
    sides: Sequence[Sequence[C]],
    run_block: Callable[[Sequence[C], list[float]], float],
    *,
    warmup: int,
    blocks: int,
    between: Call | None,
) -> list[ClientCost]:
    for calls in sides:
        run_block(calls[:warmup], [])
    timed = [calls[warmup:] for calls in sides]
    if min(len(calls) for calls in timed) < blocks:
        raise ValueError(f"every side needs at least {blocks} calls after the warm-up")
    cpu_per_call: list[list[float]] = [[] for _ in sides]
    samples: list[list[float]] = [[] for _ in sides]
    gc.collect()
    gc.freeze()
    try:
        for block in range(blocks):
            order = range(len(sides)) if block % 2 == 0 else reversed(range(len(sides)))
            for side in order:
                calls = timed[side]
                start, stop = (len(calls) * edge // blocks for edge in (block, block + 1))
                cpu = run_block(calls[start:stop], samples[side])
                cpu_per_call[side].append(cpu / (stop - start))
                if between is not None:
                    between()
    finally:
        gc.unfreeze()
    return [
        ClientCost(tuple(cpu), Latency.of(times))
        for cpu, times in zip(cpu_per_call, samples, strict=True)
    ]


def _timed_calls(calls: Sequence[Call], samples: list[float]) -> float:
    """Run `calls`, appending each one's wall time to `samples`; the thread CPU they used."""
    cpu_start = thread_time()
    for call in calls:
        start = perf_counter()
        call()
        samples.append(perf_counter() - start)
    return thread_time() - cpu_start


async def _timed_async_calls(calls: Sequence[AsyncCall], samples: list[float]) -> float:
    """_timed_calls awaiting each call in turn."""
    cpu_start = thread_time()
    for call in calls:
        start = perf_counter()
        await call()
        samples.append(perf_counter() - start)
    return thread_time() - cpu_start
