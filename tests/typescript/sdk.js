#!/usr/bin/env node
'use strict';
/*
A real Temporal client and worker (the official TypeScript SDK) for the
integration tests (tests/typescript_sdk.rs). The SDK's packages are installed
by scripts/tools.sh into .tools/node/node_modules; run with NODE_PATH (or
TMP_NODE_MODULES) pointing there.

Every mode prints exactly one JSON line on stdout; logs go to stderr.
Failures that are not an expected outcome print the error on stderr and
exit non-zero.

Modes (--mode):
  features          a worker (NativeConnection) and a client (Connection):
                    activities (one heartbeating, one with a --big-size
                    result), a timer, a child workflow, signals, a query, an
                    update (accepted and rejected), continue-as-new, and
                    ApplicationFailures from an activity and from a workflow,
                    each outcome reported as data.
  large-completion  starts a workflow whose first workflow task completion
                    schedules --parts activities with --size characters of
                    input in all (default 4.5 MiB in 3), then
                    waits up to --wait-seconds for the run to close and
                    reports its status and the history's workflow task
                    failures and termination.
  idle              runs one workflow, leaves the worker idle --idle-seconds,
                    then runs another and reports how long it took.
  denied            as the client and as a worker, calls on
                    --other-namespace (DescribeNamespace, StartWorkflowExecution,
                    Worker.create), reporting each error (code, message); and
                    runs one workflow on --namespace as a positive control.

Connection: --address host:port, --namespace; TLS when --ca is given (with
--cert/--key for mTLS and --server-name as the name verified and sent as
SNI), plaintext h2c otherwise. --no-compression turns off the worker's gzip
request compression (on by default in the SDK's core).
*/

const fs = require('node:fs');
const path = require('node:path');
const { randomUUID } = require('node:crypto');
const { parseArgs } = require('node:util');

const started = Date.now();

function fail(message, code) {
  process.stderr.write(`sdk.js: ${message}\n`);
  process.exit(code);
}

const { values: args } = parseArgs({
  options: {
    mode: { type: 'string', default: 'features' },
    address: { type: 'string' },
    namespace: { type: 'string', default: 'default' },
    'other-namespace': { type: 'string' },
    'task-queue': { type: 'string' },
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    'server-name': { type: 'string' },
    'big-size': { type: 'string', default: String(Math.floor(3.5 * 1024 * 1024)) },
    size: { type: 'string', default: String(Math.floor(4.5 * 1024 * 1024)) },
    parts: { type: 'string', default: '3' },
    'no-compression': { type: 'boolean', default: false },
    'wait-seconds': { type: 'string', default: '60' },
    'idle-seconds': { type: 'string', default: '75' },
    'overall-timeout': { type: 'string', default: '150' },
  },
  strict: true,
});
if (!args.address) fail('--address is required', 2);

const overallTimeout = setTimeout(
  () => fail(`overall timeout of ${args['overall-timeout']} s exceeded`, 3),
  Number(args['overall-timeout']) * 1000,
);
overallTimeout.unref();

// Where the SDK's packages are: TMP_NODE_MODULES, else the first NODE_PATH entry.
const NODE_MODULES =
  process.env.TMP_NODE_MODULES || (process.env.NODE_PATH || '').split(path.delimiter).find((p) => p) || '';
function sdkRequire(name) {
  try {
    return require(name);
  } catch (err) {
    if (NODE_MODULES) return require(path.join(NODE_MODULES, name));
    throw err;
  }
}

const { Client, Connection, WorkflowFailedError, WorkflowUpdateFailedError } = sdkRequire('@temporalio/client');
const { DefaultLogger, NativeConnection, Runtime, Worker, bundleWorkflowCode } = sdkRequire('@temporalio/worker');
const { temporal } = sdkRequire('@temporalio/proto');

const stderrLogger = new DefaultLogger('WARN', (entry) => {
  const meta = entry.meta && Object.keys(entry.meta).length ? ` ${JSON.stringify(entry.meta)}` : '';
  process.stderr.write(`[${entry.level}] ${entry.message}${meta}\n`);
});
Runtime.install({
  logger: stderrLogger,
  telemetryOptions: { logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} } },
});

const activities = require('./activities');

function tls() {
  if (!args.ca) {
    if (args.cert || args.key) fail('--cert/--key need --ca', 2);
    return undefined;
  }
  const out = { serverRootCACertificate: fs.readFileSync(args.ca) };
  if (args['server-name']) out.serverNameOverride = args['server-name'];
  if (args.cert || args.key) {
    out.clientCertPair = { crt: fs.readFileSync(args.cert), key: fs.readFileSync(args.key) };
  }
  return out;
}

async function clientConnection() {
  return await Connection.connect({ address: args.address, tls: tls(), connectTimeout: '15s' });
}

async function workerConnection() {
  return await NativeConnection.connect({
    address: args.address,
    tls: tls(),
    // Core gzips requests by default; without it an over-size message is
    // over the limit on the wire too, not only once decompressed.
    grpcCompression: args['no-compression'] ? { codec: 'none' } : undefined,
  });
}

let bundle;
async function workflowBundle() {
  if (!bundle) {
    bundle = await bundleWorkflowCode({
      workflowsPath: require.resolve('./workflows'),
      logger: stderrLogger,
      // The packages live outside this folder (in .tools/node).
      webpackConfigHook: (config) => {
        config.resolve = config.resolve || {};
        config.resolve.modules = [...(NODE_MODULES ? [NODE_MODULES] : []), 'node_modules'];
        return config;
      },
    });
  }
  return bundle;
}

async function createWorker(connection, namespace, taskQueue) {
  return await Worker.create({
    connection,
    namespace,
    taskQueue,
    workflowBundle: await workflowBundle(),
    activities,
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const seconds = (ms) => Math.round(ms) / 1000;
const uid = () => randomUUID().slice(0, 12);

function enumName(enumObj, value) {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  return enumObj[value] || String(value);
}

// A TemporalFailure chain (ApplicationFailure, ActivityFailure, ...) as data.
function failureJson(f) {
  if (!f) return null;
  const out = { class: f.constructor ? f.constructor.name : typeof f, message: f.message };
  for (const k of ['type', 'details', 'nonRetryable', 'activityType', 'activityId', 'retryState']) {
    if (f[k] !== undefined) out[k] = f[k];
  }
  out.cause = failureJson(f.cause);
  return out;
}

// An error as data: its class and message, and the gRPC status found on it
// or its causes (grpc-js ServiceError: code, details).
function errorJson(err) {
  const out = { class: err && err.constructor ? err.constructor.name : typeof err, message: String(err && err.message) };
  for (let e = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (typeof e.code === 'number') {
      out.code = e.code;
      out.details = e.details;
      break;
    }
  }
  if (err && err.cause) out.cause = { class: err.cause.constructor.name, message: String(err.cause.message) };
  return out;
}

async function expectWorkflowFailure(handle) {
  try {
    const value = await handle.result();
    return { failed: false, value };
  } catch (err) {
    if (err instanceof WorkflowFailedError) {
      return { failed: true, class: 'WorkflowFailedError', retryState: err.retryState, cause: failureJson(err.cause) };
    }
    throw err;
  }
}

async function modeFeatures() {
  const taskQueue = args['task-queue'] || `ts-features-${uid()}`;
  const namespace = args.namespace;
  const connection = await clientConnection();
  const client = new Client({ connection, namespace });
  const worker = await createWorker(await workerConnection(), namespace, taskQueue);
  const bigSize = Number(args['big-size']);
  const out = await worker.runUntil(async () => {
    const opts = (prefix) => ({ taskQueue, workflowId: `${prefix}-${uid()}`, workflowExecutionTimeout: '120s' });

    const feature = (async () => {
      const handle = await client.workflow.start('featureWorkflow', { ...opts('ts-feature'), args: ['ts', bigSize] });
      await handle.signal('addItem', 'apple');
      await handle.signal('addItem', 'pear');
      const previousLabel = await handle.executeUpdate('setLabel', { args: ['blue'] });
      let rejectedUpdate = null;
      try {
        await handle.executeUpdate('setLabel', { args: [''] });
      } catch (err) {
        if (!(err instanceof WorkflowUpdateFailedError)) throw err;
        rejectedUpdate = { class: err.constructor.name, message: err.message, cause: failureJson(err.cause) };
      }
      let query = null;
      for (let i = 0; i < 50; i++) {
        query = await handle.query('items');
        if (query.length >= 2) break;
        await sleep(200);
      }
      await handle.signal('finish');
      const result = await handle.result();
      const desc = await handle.describe();
      return { workflowId: handle.workflowId, result, previousLabel, rejectedUpdate, query, status: desc.status.name };
    })();

    const counter = (async () => {
      const handle = await client.workflow.start('counterWorkflow', { ...opts('ts-counter'), args: [1, 3] });
      const result = await handle.result();
      const first = await client.workflow.getHandle(handle.workflowId, handle.firstExecutionRunId).describe();
      const latest = await client.workflow.getHandle(handle.workflowId).describe();
      return {
        result,
        firstRunId: handle.firstExecutionRunId,
        firstRunStatus: first.status.name,
        latestRunId: latest.runId,
        latestRunStatus: latest.status.name,
      };
    })();

    const activityFailure = (async () => {
      const handle = await client.workflow.start('activityFailureWorkflow', { ...opts('ts-actfail'), args: ['4242'] });
      return await expectWorkflowFailure(handle);
    })();

    const workflowFailure = (async () => {
      const handle = await client.workflow.start('workflowFailureWorkflow', { ...opts('ts-wffail'), args: ['A-17'] });
      return await expectWorkflowFailure(handle);
    })();

    return {
      feature: await feature,
      counter: await counter,
      activityFailure: await activityFailure,
      workflowFailure: await workflowFailure,
    };
  });
  await connection.close();
  return { ok: true, namespace, taskQueue, ...out };
}

function historySummary(history) {
  const { EventType, WorkflowTaskFailedCause } = temporal.api.enums.v1;
  const events = history.events || [];
  const summary = {
    eventTypes: events.map((e) => enumName(EventType, e.eventType)),
    workflowTaskFailures: [],
    terminated: null,
    failed: null,
  };
  for (const e of events) {
    const wtf = e.workflowTaskFailedEventAttributes;
    if (wtf) {
      summary.workflowTaskFailures.push({
        cause: enumName(WorkflowTaskFailedCause, wtf.cause),
        message: wtf.failure ? wtf.failure.message : null,
        identity: wtf.identity || null,
      });
    }
    const term = e.workflowExecutionTerminatedEventAttributes;
    if (term) {
      summary.terminated = { reason: term.reason || null, identity: term.identity || null };
    }
    const failed = e.workflowExecutionFailedEventAttributes;
    if (failed) {
      summary.failed = { message: failed.failure ? failed.failure.message : null };
    }
  }
  return summary;
}

async function modeLargeCompletion() {
  const taskQueue = args['task-queue'] || `ts-large-${uid()}`;
  const namespace = args.namespace;
  const connection = await clientConnection();
  const client = new Client({ connection, namespace });
  const worker = await createWorker(await workerConnection(), namespace, taskQueue);
  const size = Number(args.size);
  const parts = Number(args.parts);
  const waitMs = Number(args['wait-seconds']) * 1000;
  const out = await worker.runUntil(async () => {
    const handle = await client.workflow.start('largeCompletionWorkflow', {
      taskQueue,
      workflowId: `ts-large-${uid()}`,
      args: [size, parts],
      workflowExecutionTimeout: '300s',
    });
    const t0 = Date.now();
    let desc = await handle.describe();
    while (desc.status.name === 'RUNNING' && Date.now() - t0 < waitMs) {
      await sleep(250);
      desc = await handle.describe();
    }
    const closedAfter = seconds(Date.now() - t0);
    const history = historySummary(await handle.fetchHistory());
    if (desc.status.name === 'RUNNING') {
      // Do not leave the worker retrying while it shuts down.
      await handle.terminate('test: still running after the wait').catch(() => undefined);
    }
    return { workflowId: handle.workflowId, status: desc.status.name, closedAfterS: closedAfter, history };
  });
  await connection.close();
  return { ok: true, namespace, size, parts, compression: !args['no-compression'], ...out };
}

async function modeIdle() {
  const taskQueue = args['task-queue'] || `ts-idle-${uid()}`;
  const namespace = args.namespace;
  const connection = await clientConnection();
  const client = new Client({ connection, namespace });
  const worker = await createWorker(await workerConnection(), namespace, taskQueue);
  const idleMs = Number(args['idle-seconds']) * 1000;
  const out = await worker.runUntil(async () => {
    const run = async (name) => {
      const t0 = Date.now();
      const result = await client.workflow.execute('greetingWorkflow', {
        taskQueue,
        workflowId: `ts-idle-${uid()}`,
        args: [name],
        workflowExecutionTimeout: '60s',
      });
      return { result, elapsedS: seconds(Date.now() - t0) };
    };
    const before = await run('before');
    const idleStart = Date.now();
    await sleep(idleMs);
    const idleS = seconds(Date.now() - idleStart);
    const after = await run('after');
    return { before, idleS, after };
  });
  await connection.close();
  return { ok: true, namespace, ...out };
}

async function modeDenied() {
  const own = args.namespace;
  const other = args['other-namespace'];
  if (!other) fail('--other-namespace is required in --mode denied', 2);
  const connection = await clientConnection();
  const out = {};

  const svc = connection.workflowService;
  const ownNs = await svc.describeNamespace({ namespace: own });
  out.ownDescribe = { ok: true, name: ownNs.namespaceInfo.name };
  try {
    await svc.describeNamespace({ namespace: other });
    out.otherDescribe = { ok: true };
  } catch (err) {
    out.otherDescribe = { ok: false, ...errorJson(err) };
  }
  try {
    const h = await new Client({ connection, namespace: other }).workflow.start('greetingWorkflow', {
      taskQueue: `ts-denied-${uid()}`,
      workflowId: `ts-denied-${uid()}`,
      args: ['nobody'],
    });
    out.otherStart = { ok: true, runId: h.firstExecutionRunId };
  } catch (err) {
    out.otherStart = { ok: false, ...errorJson(err) };
  }

  const nativeConnection = await workerConnection();
  try {
    const w = await createWorker(nativeConnection, other, `ts-denied-${uid()}`);
    out.otherWorker = { ok: true };
    // Created anyway (no namespace check at creation): see whether it can
    // poll, briefly.
    await w.runUntil(sleep(3000)).catch((err) => {
      out.otherWorker = { ok: false, phase: 'run', ...errorJson(err) };
    });
  } catch (err) {
    out.otherWorker = { ok: false, phase: 'create', ...errorJson(err) };
  }

  // Positive control: the same certificate runs a workflow on its own namespace.
  const taskQueue = `ts-control-${uid()}`;
  const worker = await createWorker(nativeConnection, own, taskQueue);
  out.ownWorkflow = await worker.runUntil(
    new Client({ connection, namespace: own }).workflow.execute('greetingWorkflow', {
      taskQueue,
      workflowId: `ts-control-${uid()}`,
      args: ['own'],
      workflowExecutionTimeout: '60s',
    }),
  );
  await connection.close();
  return { ok: true, namespace: own, otherNamespace: other, ...out };
}

const MODES = {
  features: modeFeatures,
  'large-completion': modeLargeCompletion,
  idle: modeIdle,
  denied: modeDenied,
};

async function main() {
  const mode = MODES[args.mode];
  if (!mode) fail(`unknown --mode ${args.mode} (one of ${Object.keys(MODES).join(', ')})`, 2);
  const out = await mode();
  out.mode = args.mode;
  out.elapsedS = seconds(Date.now() - started);
  return out;
}

main().then(
  (out) => {
    process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
  },
  (err) => {
    process.stderr.write(`sdk.js: ${(err && err.stack) || err}\n`);
    if (err && err.cause) process.stderr.write(`caused by: ${(err.cause && err.cause.stack) || err.cause}\n`);
    process.exit(1);
  },
);
