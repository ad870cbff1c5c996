"""The one timing helper: latency of one caller, throughput of several threads or tasks,
client cost (sync calls, or async calls awaited on one event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import statistics
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
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
    using `cpu_seconds` of the process's CPU time (every thread's) meanwhile, during which
    the kernel preempted the process's threads `preemptions` times (involuntary context
    switches: a core taken from a runnable thread, say for a server backend it had just
    woken with a query)."""

    threads: int
    operations: int
    seconds: float
    cpu_seconds: float = 0.0
    preemptions: int = 0
    cores_busy: tuple[float, ...] = ()
    """The share (0 to 1) of each core's time it ran anything, this process, a server or
    the kernel, meanwhile; core 0 first (see busy_shares); empty where unknown."""

    @property
    def per_second(self) -> float:
        """Operations per second over all threads."""
        return self.operations / self.seconds

    @property
    def cpu_us_per_operation(self) -> float:
        """The client process's CPU per operation, in microseconds."""
        return self.cpu_seconds / self.operations * 1_000_000

    @property
    def preemptions_per_operation(self) -> float:
        """How often, per operation, a client thread lost its core while it could run."""
        return self.preemptions / self.operations


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
    """The median over the blocks (or rounds) of top / bottom, each pair measured together.

    In measure_client_cost the two sides take turns call by call within a block, and in the
    tasks-vs-threads section one run of each makes a round: the two figures of a pair meet
    the same state of the machine (a slower phase lasts seconds), so their ratio cancels it,
    where a ratio of the two medians mixes figures of different times.
    """
    if len(tops) != len(bottoms):
        raise ValueError(f"not one run: {len(tops)} and {len(bottoms)} rounds")
    return statistics.median(top / bottom for top, bottom in zip(tops, bottoms, strict=True))


CoreTimes = tuple[tuple[int, int], ...]
"""Each core's busy and total clock ticks since boot, core 0 first."""


def core_times(stat: str | None = None) -> CoreTimes:
    """Each core's busy and total clock ticks so far, read from `stat` (the text of
    /proc/stat, read here if not given); empty where there is no /proc/stat.

    Busy is running anything: user, nice, system, irq, softirq. The rest of the total is
    idle, waiting for I/O, or stolen by the hypervisor, when nothing here could run.
    """
    if stat is None:
        try:
            stat = Path("/proc/stat").read_text()
        except OSError:
            return ()
    cores = []
    for line in stat.splitlines():
        name, _, fields = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():  # not the machine's "cpu" line
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields.split()[:8])
            busy = user + nice + system + irq + softirq
            cores.append((busy, busy + idle + iowait + steal))
    return tuple(cores)


def busy_shares(before: CoreTimes, after: CoreTimes) -> tuple[float, ...]:
    """The share of each core's time it was busy between two core_times readings."""
    return tuple(
        (busy - busy_before) / (total - total_before) if total > total_before else 0.0
        for (busy_before, total_before), (busy, total) in zip(before, after, strict=True)
    )


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
    start = _Readings.now()
    for thread in threads:
        thread.join()
    throughput = start.throughput(len(calls), len(calls) * operations_per_thread)
    if errors:
        raise errors[0]
    return throughput


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
        start = _Readings.now()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        throughput = start.throughput(len(calls), len(calls) * operations_per_task)
        errors = [error for error in outcomes if isinstance(error, BaseException)]
        # A task that failed broke the barrier for the others: its error is the one reported.
        errors.sort(key=lambda error: isinstance(error, asyncio.BrokenBarrierError))
        if errors:
            raise errors[0]
        return throughput

    return runner.run(measure())


@dataclass(frozen=True, slots=True)
class _Readings:
    """What a throughput run is measured against: clocks and counters at its start."""

    wall: float
    cpu: float
    preemptions: int
    """Involuntary context switches of this process's threads so far."""
    cores: CoreTimes

    @classmethod
    def now(cls) -> _Readings:
        return cls(
            perf_counter(),
            process_time(),
            resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw,
            core_times(),
        )

    def throughput(self, workers: int, operations: int) -> Throughput:
        """`operations` by `workers` threads or tasks, from these readings until now."""
        end = _Readings.now()
        return Throughput(
            workers,
            operations,
            end.wall - self.wall,
            end.cpu - self.cpu,
            end.preemptions - self.preemptions,
            busy_shares(self.cores, end.cores),
        )


def measure_client_cost(
    sides: Sequence[Sequence[Call]], *, warmup: int, blocks: int
) -> list[ClientCost]:
    """The client cost of each side's calls, the sides taking turns call by call.

    Every side has as many calls. Call i of every side runs before call i + 1 of any, in an
    order reversed at every i (A B, B A...), so the sides meet the same state of the machine
    within a millisecond and run after one another's code alike; each call's thread CPU and
    wall time are read around it (the timer itself, about 0.5 µs per call here, is in both
    sides' figures). The first `warmup` calls are not timed; the rest are split into `blocks`
    blocks, in each of which a side's CPU per call is its total over the block's calls.
    Measured here with four sides running identical add_turn calls, three runs: the ratio of
    two identical sides (paired_ratio) was 0.990-1.012; taking turns by blocks of 100 calls
    instead, as this did first, it was 0.94-1.07 (0.87-1.10 as a ratio of medians).
    Objects that exist before the first block are frozen out of garbage collection
    meanwhile, so a collection costs what the calls themselves left, whatever else the
    process holds. Raises ValueError if the sides have different numbers of calls, or fewer
    timed calls than `blocks`.
    """
    return _measure(sides, _timed_calls, warmup=warmup, blocks=blocks)


def measure_async_client_cost(
    runner: asyncio.Runner, sides: Sequence[Sequence[AsyncCall]], *, warmup: int, blocks: int
) -> list[ClientCost]:
    """measure_client_cost for async calls: each block is one task on `runner`'s loop that
    awaits the calls one after another, so the loop's own work is the client's too."""

    def run_block(
        calls: Sequence[Sequence[AsyncCall]], cpu: list[float], walls: list[list[float]]
    ) -> None:
        runner.run(_timed_async_calls(calls, cpu, walls))

    return _measure(sides, run_block, warmup=warmup, blocks=blocks)


Block = Callable[[Sequence[Sequence[C]], list[float], list[list[float]]], None]
"""Runs one block: each side's calls (same count), adding each side's CPU seconds to its
entry of the second argument and each call's wall time to its list in the third."""


def _measure(
    sides: Sequence[Sequence[C]], run_block: Block[C], *, warmup: int, blocks: int
) -> list[ClientCost]:
    count = len(sides[0])
    if any(len(calls) != count for calls in sides):
        raise ValueError("every side needs as many calls")
    if count - warmup < blocks:
        raise ValueError(f"every side needs at least {blocks} calls after the warm-up")
    run_block([calls[:warmup] for calls in sides], [0.0] * len(sides), [[] for _ in sides])
    cpu_per_call: list[list[float]] = [[] for _ in sides]
    walls: list[list[float]] = [[] for _ in sides]
    gc.collect()
    gc.freeze()
    try:
        for block in range(blocks):
            start, stop = (
                warmup + (count - warmup) * edge // blocks for edge in (block, block + 1)
            )
            cpu = [0.0] * len(sides)
            run_block([calls[start:stop] for calls in sides], cpu, walls)
            for side, seconds in enumerate(cpu):
                cpu_per_call[side].append(seconds / (stop - start))
    finally:
        gc.unfreeze()
    return [
        ClientCost(tuple(cpu), Latency.of(times))
        for cpu, times in zip(cpu_per_call, walls, strict=True)
    ]


def _turns(sides: Sequence[Sequence[C]]) -> Iterator[tuple[int, C]]:
    """(side, call) in the order the sides take turns: call i of every side, for each i in
    turn, the order of the sides reversed at every i (A B, B A...)."""
    order = list(range(len(sides)))
    for index in range(len(sides[0])):
        for side in order:
            yield side, sides[side][index]
        order.reverse()


def _timed_calls(
    sides: Sequence[Sequence[Call]], cpu: list[float], walls: list[list[float]]
) -> None:
    """Run the sides' calls taking turns, adding each one's CPU and wall time to its side."""
    for side, call in _turns(sides):
        wall_start, cpu_start = perf_counter(), thread_time()
        call()
        cpu[side] += thread_time() - cpu_start
        walls[side].append(perf_counter() - wall_start)


async def _timed_async_calls(
    sides: Sequence[Sequence[AsyncCall]], cpu: list[float], walls: list[list[float]]
) -> None:
    """_timed_calls awaiting each call in turn."""
    for side, call in _turns(sides):
        wall_start, cpu_start = perf_counter(), thread_time()
        await call()
        cpu[side] += thread_time() - cpu_start
        walls[side].append(perf_counter() - wall_start)
