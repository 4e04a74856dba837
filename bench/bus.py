"""Benchmark of the messaging runtime: `python bench/bus.py` (`--help`; or `make bench`).

One run on a private redis-server (started here), one process, one event loop for producer
and consumer. For `EngineeringMessage` it measures end-to-end throughput (publish to handler,
acknowledged) at publish/read batch 1 and 100, and publish-to-handler latency p50/p99 at a
steady 1,000 messages/s, for:

- ours: `shared.messaging.Bus` (registry check, envelope, pydantic validation of every
  message, a task per message, acknowledgement + deletion by script after the handler,
  leases, retries and dead letters armed, metrics; a batch is published by one script call
  and, when the consumer is behind, read and acknowledged by another);
- plain: a redis-py loop doing pipelined XADD, XREADGROUP, XACK with `json.loads` at the
  same batch size, the floor a runtime sending these commands one by one pays;
- faststream: FastStream's Redis stream subscriber with a consumer group and a pydantic
  message (the peer users would pick instead).

Each scenario runs `--rounds` times (interleaved); a cell shows the median round. CPU is this
process's (producer, consumer, client), per message handled; the server's is not counted.
The targets of issue 3 are printed last with whether each is met. Bounded in time: every
scenario stops at its message count or its budget.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog

from shared import bench_record, registry
from shared.contracts import EngineeringMessage
from shared.messaging import Bus, MessageContext
from shared.redis_server import RedisServer
from shared.registry import Actor

STREAM = registry.get("engineering:queue").name
GROUP = registry.get("engineering:queue").consumer_group
SCENARIO_BUDGET_S = 8.0
"""Longest a scenario publishes by default (`--budget-s`); what it published by then is
what it measures."""
SCENARIO_GRACE_S = 3.0
"""How much longer a scenario may take to consume what it published."""


@dataclass
class Result:
    """Figures of one scenario."""

    name: str
    batch: int
    messages: int
    seconds: float
    latencies_ms: list[float]
    cpu_us_per_message: float
    """CPU time of this process (producer, consumer, client) per message handled."""

    @property
    def rate(self) -> float:
        """Messages handled per second."""
        return self.messages / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        """A latency percentile in milliseconds."""
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


class Probe:
    """Publish times by task id; handled times; completion."""

    def __init__(self, total: int, budget_s: float) -> None:
        self.total = total
        self.budget_s = budget_s
        self.sent: dict[str, float] = {}
        self.latencies_ms: list[float] = []
        self.done = asyncio.Event()
        self.last = 0.0
        self.cpu_started = time.process_time()

    def handled(self, task_id: str) -> None:
        now = time.perf_counter()
        self.latencies_ms.append((now - self.sent[task_id]) * 1000)
        self.last = now
        if len(self.latencies_ms) >= self.total:
            self.done.set()


def messages(total: int) -> list[EngineeringMessage]:
    """The messages of one scenario, built before the clock starts."""
    return [EngineeringMessage(task_id=f"t-{i}", project_id="p", user_id=1) for i in range(total)]


Publish = Callable[[list[EngineeringMessage]], Awaitable[None]]


async def produce(probe: Probe, batch: int, publish: Publish, rate: float | None) -> float:
    """Publish the messages in batches (paced when `rate` is set) until all are out or the
    budget is spent; returns the start time."""
    items = messages(probe.total)
    probe.cpu_started = time.process_time()
    started = time.perf_counter()
    for index in range(0, len(items), batch):
        if time.perf_counter() - started > probe.budget_s:
            probe.total = index  # out of budget: the scenario measures what it published
            if len(probe.latencies_ms) >= probe.total:
                probe.done.set()
            break
        chunk = items[index : index + batch]
        if rate is not None:
            due = started + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        now = time.perf_counter()
        for message in chunk:
            probe.sent[message.task_id] = now
        await publish(chunk)
    return started


async def finish(probe: Probe, name: str, batch: int, started: float) -> Result:
    """Wait for the last published message, bounded by the budget and grace time."""
    left_s = probe.budget_s + SCENARIO_GRACE_S - (time.perf_counter() - started)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(probe.done.wait(), max(left_s, 0.1))
    handled = len(probe.latencies_ms)
    if handled < len(probe.sent):
        print(f"  {name} batch {batch}: out of time, {handled} of {len(probe.sent)} handled")
    cpu_us = (time.process_time() - probe.cpu_started) * 1e6 / max(handled, 1)
    return Result(name, batch, handled, probe.last - started, probe.latencies_ms, cpu_us)


async def run_ours(url: str, total: int, batch: int, rate: float | None, budget_s: float) -> Result:
    """Our runtime."""
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    bus = Bus(client, actor=Actor.LANGGRAPH)
    probe = Probe(total, budget_s)

    async def handle(message: EngineeringMessage, ctx: MessageContext) -> None:
        probe.handled(message.task_id)

    consumer = bus.consumer(STREAM, handle, concurrency=batch, block_ms=1000)
    await consumer.ensure_groups()
    runner = asyncio.create_task(consumer.run())

    async def publish(chunk: list[EngineeringMessage]) -> None:
        if len(chunk) == 1:
            await bus.publish(STREAM, chunk[0])
        else:
            await bus.publish_many([(STREAM, m) for m in chunk])

    try:
        started = await produce(probe, batch, publish, rate)
        return await finish(probe, "ours", batch, started)
    finally:
        consumer.stop()
        await runner
        await client.aclose()


async def run_plain(
    url: str, total: int, batch: int, rate: float | None, budget_s: float
) -> Result:
    """A plain redis-py XADD / XREADGROUP / XACK loop with JSON."""
    client = aioredis.Redis.from_url(url)
    reader = aioredis.Redis.from_url(url)
    await client.flushdb()
    await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    probe = Probe(total, budget_s)

    async def consume() -> None:
        while not probe.done.is_set():
            reply: Any = await reader.xreadgroup(GROUP, "c", {STREAM: ">"}, count=batch, block=1000)
            for _, entries in reply or ():
                ids = []
                for entry_id, fields in entries:
                    probe.handled(json.loads(fields[b"payload"])["task_id"])
                    ids.append(entry_id)
                await reader.xack(STREAM, GROUP, *ids)

    async def publish(chunk: list[EngineeringMessage]) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for message in chunk:
                pipe.xadd(STREAM, {"payload": message.model_dump_json()})
            await pipe.execute()

    loop = asyncio.create_task(consume())
    try:
        started = await produce(probe, batch, publish, rate)
        return await finish(probe, "plain", batch, started)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await client.aclose()
        await reader.aclose()


async def run_faststream(
    url: str, total: int, batch: int, rate: float | None, budget_s: float
) -> Result:
    """FastStream's Redis stream subscriber, consumer group, pydantic message."""
    from faststream.redis import RedisBroker, StreamSub

    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    probe = Probe(total, budget_s)
    broker = RedisBroker(url, logger=None)  # type: ignore[arg-type] # None: no logging (docs)

    @broker.subscriber(stream=StreamSub(STREAM, group=GROUP, consumer="c", max_records=batch))
    async def handle(message: EngineeringMessage) -> None:
        probe.handled(message.task_id)

    await broker.start()

    async def publish(chunk: list[EngineeringMessage]) -> None:
        if len(chunk) == 1:
            await broker.publish(chunk[0], stream=STREAM)
            return
        async with client.pipeline(transaction=False) as pipe:
            for message in chunk:
                await broker.publish(message, stream=STREAM, pipeline=pipe)
            await pipe.execute()

    try:
        started = await produce(probe, batch, publish, rate)
        return await finish(probe, "faststream", batch, started)
    finally:
        await broker.stop()
        await client.aclose()


Runner = Callable[[str, int, int, float | None, float], Awaitable[Result]]
RUNNERS: dict[str, Runner] = {"ours": run_ours, "plain": run_plain, "faststream": run_faststream}


@dataclass(frozen=True)
class Scenario:
    """One load shape: publish/read batch, message count, and a pace (None: flat out)."""

    key: str
    label: str
    batch: int
    messages: int
    rate: float | None


SCENARIOS = {
    s.key: s
    for s in (
        Scenario("batch1", "batch 1", 1, 3_000, None),
        Scenario("batch100", "batch 100", 100, 20_000, None),
        Scenario("steady", "1000/s", 1, 2_000, 1_000.0),
    )
}

TARGET_VS_PLAIN = 0.7
"""Issue 3: at least this share of the plain loop's throughput at batch 100."""
TARGET_P99_MS = 5.0
"""Issue 3: p99 publish-to-handler latency at 1,000 messages/s below this."""


def pick(results: list[Result], *, steady: bool) -> Result:
    """The median round: by p99 for the paced scenario, by throughput otherwise."""
    ordered = sorted(results, key=(lambda r: r.pct(0.99)) if steady else (lambda r: r.rate))
    return ordered[(len(ordered) - 1) // 2]


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def targets(rows: dict[tuple[str, str], Result]) -> list[tuple[str, str, bool]]:
    """Issue 3's targets that the measured rows allow to judge: (target, measured, met)."""
    found: list[tuple[str, str, bool]] = []

    def ratio(scenario: str, other: str) -> float | None:
        ours, them = rows.get(("ours", scenario)), rows.get((other, scenario))
        if ours is None or them is None or not them.rate:
            return None
        return ours.rate / them.rate

    at_100 = ratio("batch100", "plain")
    if at_100 is not None:
        found.append(
            (
                f"batch 100: >= {TARGET_VS_PLAIN}x the plain loop's throughput",
                f"{at_100:.2f}x",
                at_100 >= TARGET_VS_PLAIN,
            )
        )
    for key in ("batch1", "batch100"):
        vs_peer = ratio(key, "faststream")
        if vs_peer is not None:
            found.append(
                (
                    f"{SCENARIOS[key].label}: faster than FastStream",
                    f"{vs_peer:.2f}x",
                    vs_peer > 1.0,
                )
            )
    steady = rows.get(("ours", "steady"))
    if steady is not None:
        p99 = steady.pct(0.99)
        found.append(
            (f"1,000 msg/s: p99 < {TARGET_P99_MS:g} ms", f"{p99:.2f} ms", p99 < TARGET_P99_MS)
        )
    return found


def print_table(rows: dict[tuple[str, str], Result], runtimes: list[str]) -> None:
    """The figures per scenario and runtime, with ratios to the plain loop and FastStream."""
    print(
        f"{'scenario':<11}{'runtime':<12}{'msg/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'CPU us/msg':>12}{'vs plain':>10}{'vs faststream':>15}"
    )
    for key, scenario in SCENARIOS.items():
        plain, peer = rows.get(("plain", key)), rows.get(("faststream", key))
        for name in runtimes:
            r = rows.get((name, key))
            if r is None:
                continue
            vs_plain = f"{r.rate / plain.rate:>9.2f}x" if plain and plain.rate else f"{'-':>10}"
            vs_peer = f"{r.rate / peer.rate:>14.2f}x" if peer and peer.rate else f"{'-':>15}"
            print(
                f"{scenario.label:<11}{name:<12}{r.rate:>8,.0f}{r.pct(0.5):>9.2f}"
                f"{r.pct(0.99):>9.2f}{r.cpu_us_per_message:>12,.0f}{vs_plain}{vs_peer}"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the benchmark."""
    parser = argparse.ArgumentParser(
        description="Throughput and latency of the messaging runtime against a plain redis-py "
        "loop and FastStream, on a private redis-server; prints issue 3's targets and whether "
        "each is met.",
    )
    parser.add_argument(
        "--runtimes",
        default=",".join(RUNNERS),
        help="comma-separated runtimes to run (default: %(default)s)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated scenarios: batch1, batch100, steady (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of every scenario, interleaved; each cell shows the median round "
        "(by throughput, or by p99 for the paced scenario) (default: %(default)s)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=SCENARIO_BUDGET_S,
        help="longest a scenario publishes (default: %(default)s)",
    )
    parser.add_argument(
        "--redis-server",
        default=None,
        help="redis-server binary to start (default: the one on PATH, else Valkey's)",
    )
    args = parser.parse_args(argv)
    args.runtimes = [name for name in args.runtimes.split(",") if name]
    args.scenarios = [key for key in args.scenarios.split(",") if key]
    unknown = set(args.runtimes) - set(RUNNERS) | set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown runtime or scenario: {', '.join(sorted(unknown))}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


async def main(argv: list[str] | None = None) -> None:
    """Run the chosen scenarios, print a table with ratios and the targets."""
    args = parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    info = bench_record.context()
    load_before = load_average()
    bench_started = time.perf_counter()
    measured: dict[tuple[str, str], list[Result]] = {}
    with RedisServer(binary=args.redis_server) as server:
        version = await server_version(server.url)
        for _ in range(args.rounds):
            for key in args.scenarios:
                scenario = SCENARIOS[key]
                for name in args.runtimes:
                    result = await RUNNERS[name](
                        server.url, scenario.messages, scenario.batch, scenario.rate, args.budget_s
                    )
                    measured.setdefault((name, key), []).append(result)
    elapsed_s = time.perf_counter() - bench_started
    rows = {cell: pick(results, steady=cell[1] == "steady") for cell, results in measured.items()}
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        report(info, rows, args, version, server.binary, elapsed_s, load_before)
    figures = {
        "context": info,
        "redis_version": version,
        "rounds": args.rounds,
        "cells": [
            {
                "runtime": name,
                "scenario": key,
                "messages_per_s": round(row.rate, 1),
                "p50_ms": round(row.pct(0.5), 3),
                "p99_ms": round(row.pct(0.99), 3),
                "cpu_us_per_message": round(row.cpu_us_per_message, 1),
            }
            for (name, key), row in rows.items()
        ],
        "targets": [{"target": t, "measured": v, "met": m} for t, v, m in targets(rows)],
    }
    saved = bench_record.save("bus", text.getvalue(), figures)
    print(text.getvalue(), end="")
    print(f"(figures in {saved})")


def report(
    info: dict[str, Any],
    rows: dict[tuple[str, str], Result],
    args: argparse.Namespace,
    version: str,
    binary: str,
    elapsed_s: float,
    load_before: str,
) -> None:
    """The printed figures: the machine, the table, the targets."""
    print(bench_record.context_line(info))
    print(
        f"redis-server {version} ({binary}); {len(rows)} cells x {args.rounds} "
        f"rounds in {elapsed_s:.0f} s; {os.cpu_count()} CPUs; load average "
        f"{load_before} before, {load_average()} after"
    )
    print_table(rows, args.runtimes)
    steady = rows.get(("ours", "steady"))
    if steady is not None:
        median = statistics.median(steady.latencies_ms)
        print(f"ours at 1,000 msg/s: median {median:.2f} ms, p99 {steady.pct(0.99):.2f} ms")
    for target, value, met in targets(rows):
        print(f"target  {target:<48} {value:>10}  {'met' if met else 'NOT MET'}")


async def server_version(url: str) -> str:
    """The server's `redis_version`."""
    client = aioredis.Redis.from_url(url)
    try:
        info: Any = await client.info("server")
        return str(info.get("redis_version", "?"))
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
