#!/usr/bin/env python3
"""A worker of the official Python SDK that authenticates with a bearer
token (`api_key=`) and replaces it on the running client before it expires,
for tests/tokens.rs.

It connects over TLS without a client certificate, with --api-key, starts
a worker (worker.py's greeting workflow and activity) and runs a workflow
to completion; then sets `client.api_key = <--next-api-key>` on the running
client (the worker shares it), waits until the proxy refuses the old token
(--old-refused-at, seconds since the epoch), checks that it does (a second
client with the old token, one DescribeNamespace), and runs a second
workflow on the same worker. With --denied-namespace NS it then starts a
workflow on NS with the same client's connection and current key, which the
proxy's rules do not allow, and reports the refusal. Prints one JSON line:

  {"ok": true, "results": [...], "rotated_s_before_expiry": x,
   "old_token": {"status": "UNAUTHENTICATED", "message": ...},
   "denied": {"code": "PERMISSION_DENIED", "message": ...}, "elapsed_s": x}

("denied" only with --denied-namespace.)

Any other outcome prints the error on stderr and exits non-zero.
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

from temporalio.client import Client
from temporalio.service import RPCError, TLSConfig
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

# The workflow and activity of worker.py, beside this file.
from worker import GreetingWorkflow, greet


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True, help="host:port of the proxy")
    p.add_argument("--namespace", required=True)
    p.add_argument("--ca", required=True, help="PEM file of the proxy's CA")
    p.add_argument("--server-name", required=True, help="TLS server name")
    p.add_argument("--api-key", required=True, help="the first token")
    p.add_argument("--next-api-key", required=True, help="the token that replaces it")
    p.add_argument(
        "--old-refused-at",
        type=float,
        required=True,
        help="seconds since the epoch from which the proxy refuses the first token",
    )
    p.add_argument(
        "--denied-namespace",
        help="a namespace the token may not call: start a workflow there and report the refusal",
    )
    p.add_argument("--overall-timeout", type=float, default=25.0)
    return p.parse_args(argv)


async def connect(args, api_key, lazy=False):
    with open(args.ca, "rb") as f:
        ca = f.read()
    return await Client.connect(
        args.address,
        namespace=args.namespace,
        tls=TLSConfig(server_root_ca_cert=ca, domain=args.server_name),
        api_key=api_key,
        identity=f"api-key-{uuid.uuid4().hex[:8]}",
        lazy=lazy,
    )


async def run_one(client, task_queue, name):
    return await client.execute_workflow(
        GreetingWorkflow.run,
        name,
        id=f"wf-{uuid.uuid4().hex[:12]}",
        task_queue=task_queue,
        execution_timeout=timedelta(seconds=20),
    )


async def old_token_outcome(args):
    """One call with the first token, on a client of its own."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    old = await connect(args, args.api_key, lazy=True)
    try:
        await old.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=args.namespace),
            retry=False,
            timeout=timedelta(seconds=5),
        )
    except RPCError as err:
        return {"status": err.status.name, "message": err.message}
    except RuntimeError as err:
        # The lazy client connects on its first call, with GetSystemInfo;
        # the bridge reports that call's failure as a RuntimeError that
        # carries the status in its text.
        text = str(err)
        status = "UNAUTHENTICATED" if "code: Unauthenticated" in text else "CONNECT_ERROR"
        return {"status": status, "message": text}
    return {"status": "OK", "message": ""}


async def denied_outcome(client, namespace, task_queue):
    """One StartWorkflowExecution on `namespace`, over the client's own
    connection (with its current, valid key)."""
    other = Client(client.service_client, namespace=namespace)
    try:
        await other.start_workflow(
            GreetingWorkflow.run,
            "denied",
            id=f"wf-{uuid.uuid4().hex[:12]}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=20),
            rpc_timeout=timedelta(seconds=5),
        )
    except RPCError as err:
        return {"code": err.status.name, "message": err.message}
    return {"code": "OK", "message": ""}


async def main(args):
    started = time.monotonic()
    task_queue = f"tq-{uuid.uuid4().hex[:12]}"
    client = await connect(args, args.api_key)
    results = []
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[GreetingWorkflow],
        activities=[greet],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        results.append(await run_one(client, task_queue, "first"))
        left = args.old_refused_at - time.time()
        if left <= 0:
            raise RuntimeError(
                f"the first workflow ended {-left:.1f}s after the first token expired: "
                "give it a longer lifetime"
            )
        # The property setter of temporalio's Client: every later call of
        # the client, and of the worker that shares it, sends the new key.
        client.api_key = args.next_api_key
        # The point of the test is a worker that outlives its first token,
        # so this waits on the clock: until the proxy refuses that token.
        await asyncio.sleep(left + 0.2)
        old = await old_token_outcome(args)
        if old["status"] != "UNAUTHENTICATED":
            raise RuntimeError(f"the first token was not refused after it expired: {old!r}")
        results.append(await run_one(client, task_queue, "second"))
    out = {
        "ok": True,
        "results": results,
        "rotated_s_before_expiry": round(left, 3),
        "old_token": old,
    }
    if args.denied_namespace:
        out["denied"] = await denied_outcome(client, args.denied_namespace, task_queue)
    out["elapsed_s"] = round(time.monotonic() - started, 3)
    return out


def entry(argv):
    args = parse_args(argv)
    try:
        out = asyncio.run(asyncio.wait_for(main(args), timeout=args.overall_timeout))
    except asyncio.TimeoutError:
        print(f"api_key.py: overall timeout of {args.overall_timeout}s exceeded", file=sys.stderr)
        return 3
    except Exception as err:  # noqa: BLE001 - reported, the test decides
        print(f"api_key.py: {type(err).__name__}: {err}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    code = entry(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # As worker.py: skip interpreter teardown (the SDK's native runtime can
    # crash while Python finalizes, after the result is printed).
    os._exit(code)
