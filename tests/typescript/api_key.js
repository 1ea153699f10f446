#!/usr/bin/env node
'use strict';
/*
A worker and a client of the official TypeScript SDK that authenticate with
a bearer token (`apiKey`) and replace it on their running connections before
it expires, for tests/tokens.rs. Run with NODE_PATH (or TMP_NODE_MODULES)
pointing at the SDK's packages, as sdk.js is.

It bundles the workflows (sdk.js's greetingWorkflow and greet activity),
connects over TLS without a client certificate with --api-key (a client
Connection, grpc-js, and the worker's NativeConnection, the SDK's core),
starts a worker and runs a workflow to completion; then calls setApiKey with
--next-api-key on both connections, waits until the proxy refuses the old
token (--old-refused-at, seconds since the epoch), checks that it does (a
connection of its own with the old token, one DescribeNamespace), and runs a
second workflow on the same worker. With --denied-namespace NS it then
starts a workflow on NS with a client on the same connection and current
key, which the proxy's rules do not allow, and reports the refusal. Prints
one JSON line:

  {"ok": true, "results": [...], "rotatedSBeforeExpiry": x,
   "oldToken": {"code": 16, "details": ...},
   "denied": {"code": 7, "details": ..., "message": ...}, "elapsedS": x}

("denied" only with --denied-namespace.)

Any other outcome prints the error on stderr and exits non-zero.
*/

const fs = require('node:fs');
const path = require('node:path');
const { randomUUID } = require('node:crypto');
const { parseArgs } = require('node:util');

const started = Date.now();

function fail(message, code) {
  process.stderr.write(`api_key.js: ${message}\n`);
  process.exit(code);
}

const { values: args } = parseArgs({
  options: {
    address: { type: 'string' },
    namespace: { type: 'string' },
    ca: { type: 'string' },
    'server-name': { type: 'string' },
    'api-key': { type: 'string' },
    'next-api-key': { type: 'string' },
    'old-refused-at': { type: 'string' },
    'denied-namespace': { type: 'string' },
    'overall-timeout': { type: 'string', default: '25' },
  },
  strict: true,
});
for (const k of ['address', 'namespace', 'ca', 'server-name', 'api-key', 'next-api-key', 'old-refused-at']) {
  if (!args[k]) fail(`--${k} is required`, 2);
}

const overallTimeout = setTimeout(
  () => fail(`overall timeout of ${args['overall-timeout']} s exceeded`, 3),
  Number(args['overall-timeout']) * 1000,
);
overallTimeout.unref();

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

const { Client, Connection } = sdkRequire('@temporalio/client');
const { DefaultLogger, NativeConnection, Runtime, Worker, bundleWorkflowCode } = sdkRequire('@temporalio/worker');

const logger = new DefaultLogger('WARN', (entry) => {
  const meta = entry.meta && Object.keys(entry.meta).length ? ` ${JSON.stringify(entry.meta)}` : '';
  process.stderr.write(`[${entry.level}] ${entry.message}${meta}\n`);
});
Runtime.install({
  logger,
  telemetryOptions: { logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} } },
});

const activities = require('./activities');

const tls = {
  serverRootCACertificate: fs.readFileSync(args.ca),
  serverNameOverride: args['server-name'],
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const uid = () => randomUUID().slice(0, 12);

// One call with the old token, on a connection of its own: its gRPC status
// (the connection's own GetSystemInfo is that call when it is refused).
async function oldTokenOutcome() {
  let connection;
  try {
    connection = await Connection.connect({
      address: args.address,
      tls,
      apiKey: args['api-key'],
      connectTimeout: '5s',
    });
    await connection.workflowService.describeNamespace({ namespace: args.namespace });
    return { code: 0, details: '' };
  } catch (err) {
    for (let e = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
      if (typeof e.code === 'number') return { code: e.code, details: String(e.details) };
    }
    return { code: -1, details: String(err && err.message) };
  } finally {
    if (connection) await connection.close();
  }
}

// One StartWorkflowExecution on a namespace the token may not call, by a
// client on the given connection (with its current, valid key): the gRPC
// status of the refusal, found in the SDK's error or its causes.
async function deniedOutcome(connection, namespace, taskQueue) {
  const other = new Client({ connection, namespace });
  try {
    await other.workflow.start('greetingWorkflow', {
      taskQueue,
      workflowId: `ts-api-key-${uid()}`,
      args: ['denied'],
      workflowExecutionTimeout: '20s',
    });
    return { code: 0, details: '', message: '' };
  } catch (err) {
    for (let e = err, depth = 0; e && depth < 5; e = e.cause, depth++) {
      if (typeof e.code === 'number') {
        return { code: e.code, details: String(e.details), message: String(err.message) };
      }
    }
    return { code: -1, details: '', message: String(err && err.message) };
  }
}

async function main() {
  // Before connecting: bundling is the slow part of a TypeScript worker's
  // start, and the first token is already counting down.
  const workflowBundle = await bundleWorkflowCode({
    workflowsPath: require.resolve('./workflows'),
    logger,
    webpackConfigHook: (config) => {
      config.resolve = config.resolve || {};
      config.resolve.modules = [...(NODE_MODULES ? [NODE_MODULES] : []), 'node_modules'];
      return config;
    },
  });
  const namespace = args.namespace;
  const taskQueue = `ts-api-key-${uid()}`;
  const connection = await Connection.connect({
    address: args.address,
    tls,
    apiKey: args['api-key'],
    connectTimeout: '15s',
  });
  const nativeConnection = await NativeConnection.connect({
    address: args.address,
    tls,
    apiKey: args['api-key'],
  });
  const client = new Client({ connection, namespace });
  const worker = await Worker.create({
    connection: nativeConnection,
    namespace,
    taskQueue,
    workflowBundle,
    activities,
  });
  const run = (name) =>
    client.workflow.execute('greetingWorkflow', {
      taskQueue,
      workflowId: `ts-api-key-${uid()}`,
      args: [name],
      workflowExecutionTimeout: '20s',
    });
  const out = await worker.runUntil(async () => {
    const results = [await run('first')];
    const leftMs = Number(args['old-refused-at']) * 1000 - Date.now();
    if (leftMs <= 0) {
      throw new Error(
        `the first workflow ended ${-leftMs / 1000} s after the first token expired: give it a longer lifetime`,
      );
    }
    // Both connections take the new key for every later call: the client's
    // (grpc-js) and the worker's (core), which polls on.
    connection.setApiKey(args['next-api-key']);
    await nativeConnection.setApiKey(args['next-api-key']);
    // The point is a worker that outlives its first token, so this waits on
    // the clock: until the proxy refuses that token.
    await sleep(leftMs + 200);
    const oldToken = await oldTokenOutcome();
    if (oldToken.code !== 16) {
      throw new Error(`the first token was not refused after it expired: ${JSON.stringify(oldToken)}`);
    }
    results.push(await run('second'));
    return { results, rotatedSBeforeExpiry: leftMs / 1000, oldToken };
  });
  if (args['denied-namespace']) {
    out.denied = await deniedOutcome(connection, args['denied-namespace'], taskQueue);
  }
  await connection.close();
  await nativeConnection.close();
  return { ok: true, ...out, elapsedS: (Date.now() - started) / 1000 };
}

main().then(
  (out) => {
    process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
  },
  (err) => {
    process.stderr.write(`api_key.js: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
