#!/usr/bin/env python3
"""A long-running real Temporal SDK worker + client for benches/soak.py.

One process, one client connection (through the proxy, mTLS), one worker on
its own task queue with a workflow that runs one activity. For --duration
seconds it starts a workflow every --interval seconds (at most --max-in-flight
at once) and awaits each result; then it stops starting, waits up to --drain
seconds for the ones in flight and exits.

Every finished workflow is one JSON line on stdout:
  {"event": "workflow", "id": ..., "ok": true|false, "t_start": unix_s,
   "t_end": unix_s, "error": "..."}
and the last line is {"event": "summary", "started": n, "completed": n,
"failed": n, "abandoned": n, "skipped": n} (skipped: start slots passed over
while --max-in-flight workflows were in flight). A workflow still in flight after the drain is
"abandoned" and reported as a failed workflow line with error "abandoned".
Times are wall-clock (time.time()) so that the orchestrator can compare them
with its own timeline (upstream restart windows).
"""

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.service import TLSConfig
from temporalio.worker import UnsandboxedWorkflowRunner, Worker


@activity.defn
async def soak_greet(name: str) -> str:
    return f"Hello, {name}!"


@workflow.defn
class SoakWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            soak_greet, name, start_to_close_timeout=timedelta(seconds=20)
        )


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True)
    p.add_argument("--namespace", default="default")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--server-name", default="localhost")
    p.add_argument("--duration", type=float, required=True, help="seconds of starting workflows")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between workflow starts")
    p.add_argument("--max-in-flight", type=int, default=20)
    p.add_argument("--workflow-timeout", type=float, default=90.0,
                   help="a workflow not finished after this many seconds counts as failed")
    p.add_argument("--drain", type=float, default=60.0)
    p.add_argument("--name", default="w")
    return p.parse_args(argv)


def read(path):
    with open(path, "rb") as f:
        return f.read()


async def one_workflow(client, task_queue, wid, timeout, stats):
    t_start = time.time()
    try:
        handle = await asyncio.wait_for(
            client.start_workflow(
                SoakWorkflow.run,
                wid,
                id=wid,
                task_queue=task_queue,
                execution_timeout=timedelta(seconds=timeout),
            ),
            timeout=timeout,
        )
        remaining = max(1.0, timeout - (time.time() - t_start) + 5.0)
        result = await asyncio.wait_for(handle.result(), timeout=remaining)
        if result != f"Hello, {wid}!":
            raise RuntimeError(f"unexpected result {result!r}")
    except asyncio.CancelledError:
        stats["abandoned"] += 1
        emit({"event": "workflow", "id": wid, "ok": False, "t_start": t_start,
              "t_end": time.time(), "error": "abandoned"})
        raise
    except BaseException as err:  # noqa: BLE001 - every failure is data
        stats["failed"] += 1
        emit({"event": "workflow", "id": wid, "ok": False, "t_start": t_start,
              "t_end": time.time(), "error": f"{type(err).__name__}: {err}"[:500]})
        return
    stats["completed"] += 1
    emit({"event": "workflow", "id": wid, "ok": True, "t_start": t_start, "t_end": time.time()})


async def main(args):
    client = await Client.connect(
        args.address,
        namespace=args.namespace,
        tls=TLSConfig(
            server_root_ca_cert=read(args.ca),
            client_cert=read(args.cert),
            client_private_key=read(args.key),
            domain=args.server_name,
        ),
        identity=f"soak-{args.name}-{os.getpid()}",
    )
    task_queue = f"soak-{args.name}-{uuid.uuid4().hex[:8]}"
    stats = {"started": 0, "completed": 0, "failed": 0, "abandoned": 0, "skipped": 0}
    emit({"event": "ready", "task_queue": task_queue, "t": time.time()})
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[SoakWorkflow],
        activities=[soak_greet],
        workflow_runner=UnsandboxedWorkflowRunner(),
        graceful_shutdown_timeout=timedelta(seconds=5),
    ):
        tasks = set()
        end = time.monotonic() + args.duration
        next_start = time.monotonic()
        while time.monotonic() < end:
            now = time.monotonic()
            if now < next_start:
                await asyncio.sleep(min(next_start - now, end - now))
                continue
            next_start += args.interval
            if len(tasks) >= args.max_in_flight:
                # Saturated (e.g. the upstream is restarting): skip this
                # slot rather than queue without bound.
                stats["skipped"] += 1
                continue
            wid = f"soak-{args.name}-{uuid.uuid4().hex[:12]}"
            stats["started"] += 1
            t = asyncio.create_task(
                one_workflow(client, task_queue, wid, args.workflow_timeout, stats)
            )
            tasks.add(t)
            t.add_done_callback(tasks.discard)
        if tasks:
            done, pending = await asyncio.wait(set(tasks), timeout=args.drain)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
    emit({"event": "summary", **stats})


if __name__ == "__main__":
    code = 0
    try:
        asyncio.run(main(parse_args(sys.argv[1:])))
    except KeyboardInterrupt:
        code = 130
    except BaseException as err:  # noqa: BLE001
        print(f"soak_worker.py: {type(err).__name__}: {err}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # As tests/python/worker.py: skip interpreter teardown (the SDK's native
    # runtime sometimes crashes while Python finalizes).
    os._exit(code)
