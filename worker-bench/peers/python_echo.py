"""The same echo worker on the official Python SDK (runpod 1.12.0), run by worker-bench.

BENCH_MODE=sync: a plain function (runs on the event loop); BENCH_MODE=async: a coroutine.
Both return the input after sleeping input.sleep_ms when given; the concurrency is
BENCH_CONCURRENCY through a concurrency_modifier.
"""

import asyncio
import os
import time

import runpod

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "1"))


def sync_echo(job):
    ms = (job["input"] or {}).get("sleep_ms")
    if ms:
        time.sleep(ms / 1000)
    return job["input"]


async def async_echo(job):
    ms = (job["input"] or {}).get("sleep_ms")
    if ms:
        await asyncio.sleep(ms / 1000)
    return job["input"]


runpod.serverless.start(
    {
        "handler": sync_echo if os.environ.get("BENCH_MODE") == "sync" else async_echo,
        "concurrency_modifier": lambda current: CONCURRENCY,
    }
)
