#!/usr/bin/env python3
"""A real Temporal client and worker (the official Python SDK) for the
integration tests.

Every mode prints exactly one JSON line on stdout. Failures that are not an
expected gRPC outcome print the error on stderr and exit non-zero.

Modes:
  run   start a worker with one workflow that runs one activity, run
        --workflows N workflows to completion, print
        {"ok": true, "results": [...], "workflow_ids": [...], "elapsed_s": x}
  poll  one raw PollWorkflowTaskQueue with a gRPC deadline of --timeout
        seconds, print {"ok": true, "elapsed_s": x, "empty": bool}, or on a
        gRPC error {"ok": false, "status": "DEADLINE_EXCEEDED", "message": ...,
        "elapsed_s": x} (exit 0)
  call  one raw unary call (--rpc get_system_info | describe_namespace |
        list_workflows | health), print {"ok": true, "rpc": ...} or, on a
        gRPC error, {"ok": false, "status": "UNAVAILABLE", "message": ...}
        (exit 0)

Like the Temporal CLI (Go SDK), the Python SDK gzip-compresses every request
by default (gRPC compressed flag 1, `grpc-encoding: gzip`); --no-compression
turns that off. --header KEY=VALUE adds gRPC metadata.

TLS is used when --ca is given (with --cert/--key for mTLS and
--server-name for SNI and verification); without --ca the connection is
plaintext h2c.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import traceback
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.service import RPCError, TLSConfig
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

OVERALL_TIMEOUT_S = 120.0


@activity.defn
async def greet(name: str) -> str:
    return f"Hello, {name}!"


@workflow.defn
class GreetingWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            greet, name, start_to_close_timeout=timedelta(seconds=30)
        )


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True, help="host:port of the frontend")
    p.add_argument("--namespace", default="default")
    p.add_argument("--task-queue", default=None)
    p.add_argument("--ca", default=None, help="PEM file of the server CA; enables TLS")
    p.add_argument("--cert", default=None, help="PEM client certificate (mTLS)")
    p.add_argument("--key", default=None, help="PEM client private key (mTLS)")
    p.add_argument("--server-name", default=None, help="TLS server name (SNI)")
    p.add_argument("--workflows", type=int, default=1)
    p.add_argument("--mode", choices=["run", "poll", "call"], default="run")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="gRPC deadline in seconds for poll/call (poll default 70)",
    )
    p.add_argument(
        "--rpc",
        default="get_system_info",
        choices=["get_system_info", "describe_namespace", "list_workflows", "health"],
        help="which call to make in --mode call",
    )
    p.add_argument(
        "--header",
        action="append",
        default=[],
        help="extra gRPC metadata KEY=VALUE (repeatable)",
    )
    p.add_argument("--identity", default=None)
    p.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="run mode: seconds to wait between workflow starts (spreads the run over time)",
    )
    p.add_argument(
        "--no-compression",
        action="store_true",
        help="do not gzip requests (the SDK gzips them by default)",
    )
    p.add_argument(
        "--overall-timeout",
        type=float,
        default=OVERALL_TIMEOUT_S,
        help="give up after this many seconds",
    )
    return p.parse_args(argv)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def tls_config(args):
    if not args.ca:
        if args.cert or args.key:
            raise SystemExit("--cert/--key need --ca")
        return False
    return TLSConfig(
        server_root_ca_cert=read_bytes(args.ca),
        client_cert=read_bytes(args.cert) if args.cert else None,
        client_private_key=read_bytes(args.key) if args.key else None,
        domain=args.server_name,
    )


def metadata(args):
    md = {}
    for h in args.header:
        k, sep, v = h.partition("=")
        if not sep:
            raise SystemExit(f"--header wants KEY=VALUE, got {h!r}")
        md[k.lower()] = v
    return md


async def connect(args, lazy=False):
    kwargs = {}
    if args.no_compression:
        from temporalio.service import GrpcCompression

        kwargs["grpc_compression"] = GrpcCompression.NONE
    return await Client.connect(
        args.address,
        namespace=args.namespace,
        tls=tls_config(args),
        rpc_metadata=metadata(args),
        identity=args.identity or f"selftest-{uuid.uuid4().hex[:8]}",
        lazy=lazy,
        **kwargs,
    )


def rpc_error_json(err: RPCError, **extra):
    out = {"ok": False, "status": err.status.name, "code": int(err.status), "message": err.message}
    out.update(extra)
    return out


async def mode_run(args):
    task_queue = args.task_queue or f"tq-{uuid.uuid4().hex[:12]}"
    client = await connect(args)
    started = time.monotonic()
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[GreetingWorkflow],
        activities=[greet],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        ids = [f"wf-{uuid.uuid4().hex[:12]}" for _ in range(args.workflows)]
        handles = []
        for i, wid in enumerate(ids):
            if i and args.interval:
                await asyncio.sleep(args.interval)
            handles.append(
                await client.start_workflow(
                    GreetingWorkflow.run,
                    f"n{i}",
                    id=wid,
                    task_queue=task_queue,
                    execution_timeout=timedelta(seconds=90),
                )
            )
        results = await asyncio.gather(*(h.result() for h in handles))
    expected = [f"Hello, n{i}!" for i in range(args.workflows)]
    if list(results) != expected:
        raise RuntimeError(f"unexpected results {results!r}, wanted {expected!r}")
    return {
        "ok": True,
        "namespace": args.namespace,
        "task_queue": task_queue,
        "workflow_ids": ids,
        "results": list(results),
        "elapsed_s": round(time.monotonic() - started, 3),
    }


async def mode_poll(args):
    from temporalio.api.enums.v1 import TaskQueueKind
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import PollWorkflowTaskQueueRequest

    timeout = args.timeout if args.timeout is not None else 70.0
    task_queue = args.task_queue or f"empty-{uuid.uuid4().hex[:12]}"
    client = await connect(args)
    req = PollWorkflowTaskQueueRequest(
        namespace=args.namespace,
        task_queue=TaskQueue(name=task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        identity=args.identity or "selftest-poller",
    )
    started = time.monotonic()
    try:
        resp = await client.workflow_service.poll_workflow_task_queue(
            req, retry=False, timeout=timedelta(seconds=timeout)
        )
    except RPCError as err:
        return rpc_error_json(err, elapsed_s=round(time.monotonic() - started, 3))
    return {
        "ok": True,
        "elapsed_s": round(time.monotonic() - started, 3),
        "empty": not resp.task_token,
        "task_queue": task_queue,
    }


async def mode_call(args):
    from temporalio.api.workflowservice.v1 import (
        DescribeNamespaceRequest,
        GetSystemInfoRequest,
        ListWorkflowExecutionsRequest,
    )

    timeout = timedelta(seconds=args.timeout if args.timeout is not None else 10.0)
    # Lazy, so that a connection or TLS failure surfaces as the call's error.
    try:
        client = await connect(args, lazy=True)
    except RPCError as err:
        return rpc_error_json(err, phase="connect")
    except Exception as err:  # noqa: BLE001 - reported as data, the test decides
        return {"ok": False, "status": "CONNECT_ERROR", "message": str(err), "phase": "connect"}
    svc = client.workflow_service
    try:
        if args.rpc == "get_system_info":
            resp = await svc.get_system_info(GetSystemInfoRequest(), timeout=timeout)
            detail = {"server_version": resp.server_version}
        elif args.rpc == "describe_namespace":
            resp = await svc.describe_namespace(
                DescribeNamespaceRequest(namespace=args.namespace), timeout=timeout
            )
            detail = {"namespace": resp.namespace_info.name}
        elif args.rpc == "list_workflows":
            resp = await svc.list_workflow_executions(
                ListWorkflowExecutionsRequest(namespace=args.namespace), timeout=timeout
            )
            detail = {"count": len(resp.executions)}
        else:  # health
            ok = await client.service_client.check_health(timeout=timeout)
            detail = {"serving": bool(ok)}
    except RPCError as err:
        return rpc_error_json(err, rpc=args.rpc)
    except Exception as err:  # noqa: BLE001
        return {"ok": False, "status": "CONNECT_ERROR", "message": str(err), "rpc": args.rpc}
    out = {"ok": True, "rpc": args.rpc}
    out.update(detail)
    return out


async def main(args):
    if args.mode == "run":
        return await mode_run(args)
    if args.mode == "poll":
        return await mode_poll(args)
    return await mode_call(args)


def entry(argv):
    args = parse_args(argv)
    try:
        out = asyncio.run(asyncio.wait_for(main(args), timeout=args.overall_timeout))
    except asyncio.TimeoutError:
        print(f"worker.py: overall timeout of {args.overall_timeout}s exceeded", file=sys.stderr)
        return 3
    except BaseException as err:  # noqa: BLE001
        if isinstance(err, SystemExit):
            raise
        print(f"worker.py: {type(err).__name__}: {err}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    code = entry(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the SDK's native runtime sometimes segfaults
    # (exit 139) while Python finalizes, after the work is done and reported.
    os._exit(code)
