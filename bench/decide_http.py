"""``POST /api/v1/policies/decide`` latency over HTTP at a fixed request rate.

Starts a real ``govplane serve`` (uvicorn) on loopback, then sends requests open-loop at
``--rate`` per second (each request is sent at its scheduled time, whether or not earlier ones
have answered) and prints p50/p99 for the decision endpoint next to ``GET /api/v1/health`` on
the same server at the same rate: the raw limit of the HTTP stack on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from _rows import emit, row

from control_plane.launcher import init_data_dir, serve

P99_GOAL_MS = 5.0


def _open_loop(
    send: Callable[[httpx.Client], httpx.Response], rate: float, seconds: float, workers: int
) -> list[float]:
    """Latencies (ms) of requests sent at ``rate``/s for ``seconds``, spread over threads."""
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        with httpx.Client(timeout=10) as client:
            for index in range(offset, total, workers):
                due = start + index / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent = time.perf_counter()
                response = send(client)
                elapsed = (time.perf_counter() - sent) * 1000
                with lock:
                    latencies.append(elapsed)
                    if response.status_code != 200:
                        errors.append(response.status_code)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, e.g. HTTP {errors[0]}")
    return latencies


def _summary(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure(rate: float = 200.0, seconds: float = 10.0, workers: int = 8) -> dict[str, float]:
    """Run both loads against one server; returns p50/p99 (ms) of each."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        token = init_data_dir(data_dir)
        body = {
            "subject": "admin",
            "domain": "retail",
            "object": "dataset:adult",
            "action": "read",
            "attributes": {"classification": "internal"},
        }
        headers = {"Authorization": f"Bearer {token}"}
        with serve(data_dir) as server:
            url = server.url
            decide = _open_loop(
                lambda c: c.post(f"{url}/api/v1/policies/decide", json=body, headers=headers),
                rate,
                seconds,
                workers,
            )
            health = _open_loop(lambda c: c.get(f"{url}/api/v1/health"), rate, seconds, workers)
    decide_p50, decide_p99 = _summary(decide)
    health_p50, health_p99 = _summary(health)
    return {
        "decide_p50": decide_p50,
        "decide_p99": decide_p99,
        "health_p50": health_p50,
        "health_p99": health_p99,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="end with the rows as JSON")
    args = parser.parse_args()
    figures = measure(args.rate, args.seconds)
    print(f"HTTP at {args.rate:.0f} req/s for {args.seconds:.0f} s (open loop, loopback)")
    print(f"{'endpoint':<34}{'p50 ms':>10}{'p99 ms':>10}")
    for label, key in (
        ("POST /api/v1/policies/decide", "decide"),
        ("GET /api/v1/health (raw limit)", "health"),
    ):
        print(f"{label:<34}{figures[key + '_p50']:>10.2f}{figures[key + '_p99']:>10.2f}")
    met = figures["decide_p99"] < P99_GOAL_MS
    print(f"decide p99 target < {P99_GOAL_MS:g} ms: {'met' if met else 'NOT met'}")
    if args.json:
        health = "GET /health"
        emit(
            [
                row(
                    "POST /policies/decide p50",
                    figures["decide_p50"],
                    "ms",
                    figures["health_p50"],
                    health,
                ),
                row(
                    "POST /policies/decide p99",
                    figures["decide_p99"],
                    "ms",
                    figures["health_p99"],
                    health,
                    f"p99 < {P99_GOAL_MS:g} ms",
                    met,
                ),
            ]
        )


if __name__ == "__main__":
    main()
