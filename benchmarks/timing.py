"""The one timing helper: latency of one caller, throughput of several threads."""

from __future__ import annotations

import contextlib
import statistics
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter

Call = Callable[[], object]
"""One operation, ready to run again and again (it keeps whatever state it needs)."""


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
    """`operations` completed by `threads` threads in `seconds` of wall time."""

    threads: int
    operations: int
    seconds: float

    @property
    def per_second(self) -> float:
        """Operations per second over all threads."""
        return self.operations / self.seconds


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
    start = perf_counter()
    for thread in threads:
        thread.join()
    elapsed = perf_counter() - start
    if errors:
        raise errors[0]
    return Throughput(len(calls), len(calls) * operations_per_thread, elapsed)
