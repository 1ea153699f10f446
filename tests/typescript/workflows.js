'use strict';
// Workflows of the TypeScript SDK test worker (tests/typescript/sdk.js).
// Bundled by Worker.create({ workflowsPath }) and run in the SDK's
// deterministic sandbox: only @temporalio/workflow and ./payload here.

const {
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  defineSignal,
  defineUpdate,
  executeChild,
  proxyActivities,
  setHandler,
  sleep,
  workflowInfo,
} = require('@temporalio/workflow');
const { checksum, makeText } = require('./payload');

const addItem = defineSignal('addItem');
const finish = defineSignal('finish');
const items = defineQuery('items');
const setLabel = defineUpdate('setLabel');

const { greet, bigResult, declinePayment, echoLength } = proxyActivities({
  startToCloseTimeout: '60s',
  retry: { initialInterval: '200ms', maximumAttempts: 3 },
});
const { heartbeater } = proxyActivities({
  startToCloseTimeout: '30s',
  heartbeatTimeout: '2s',
  retry: { initialInterval: '200ms', backoffCoefficient: 1, maximumAttempts: 3 },
});

// Activities (one heartbeating, one with a large result), a timer, a child
// workflow, and a signal / query / update exchange with the client, which
// ends it with the `finish` signal.
async function featureWorkflow(name, bigSize) {
  const received = [];
  let label = 'initial';
  let finished = false;
  setHandler(addItem, (item) => {
    received.push(item);
  });
  setHandler(finish, () => {
    finished = true;
  });
  setHandler(items, () => received.slice());
  setHandler(
    setLabel,
    (next) => {
      const previous = label;
      label = next;
      return previous;
    },
    {
      validator: (next) => {
        if (typeof next !== 'string' || next.length === 0) {
          throw new Error('label must be a non-empty string');
        }
      },
    },
  );

  const greeting = await greet(name);
  const heartbeat = await heartbeater(10);
  const before = Date.now();
  await sleep('1 second');
  const timerMs = Date.now() - before;
  const child = await executeChild(childWorkflow, {
    args: [name],
    workflowId: `${workflowInfo().workflowId}-child`,
  });
  const big = await bigResult(bigSize);
  const bigChecksum = checksum(big.data);
  if (!(await condition(() => finished, '60s'))) {
    throw ApplicationFailure.nonRetryable('no finish signal within 60 s', 'NoFinish');
  }
  return {
    greeting,
    heartbeat,
    timerMs,
    child,
    big: {
      length: big.data.length,
      checksum: bigChecksum,
      activityChecksum: big.checksum,
      expectedChecksum: checksum(makeText(bigSize)),
    },
    items: received.slice(),
    label,
  };
}

async function childWorkflow(name) {
  const info = workflowInfo();
  return {
    greeting: `child of ${name}`,
    parentWorkflowId: info.parent ? info.parent.workflowId : null,
  };
}

// Continues as new until `n` reaches `until`.
async function counterWorkflow(n, until) {
  if (n < until) {
    await continueAsNew(n + 1, until);
  }
  const info = workflowInfo();
  return { n, runId: info.runId, continuedFromExecutionRunId: info.continuedFromExecutionRunId || null };
}

// Fails with the activity's non-retryable ApplicationFailure (wrapped in an
// ActivityFailure by the SDK).
async function activityFailureWorkflow(card) {
  await declinePayment(card);
  return 'unreachable';
}

// Fails the workflow itself with an ApplicationFailure.
async function workflowFailureWorkflow(order) {
  throw ApplicationFailure.create({
    type: 'OrderInvalid',
    message: `order ${order} is invalid`,
    details: [{ order, missing: ['address', 'payment'] }],
    nonRetryable: true,
  });
}

// `parts` activities scheduled at once, their inputs `size` characters in
// all: one workflow task completion that large (over 4 MiB is over the
// frontend's receive limit) while each payload stays under the 2 MiB blob
// limit that the SDK enforces itself before sending.
async function largeCompletionWorkflow(size, parts) {
  const each = Math.ceil(size / parts);
  const lengths = await Promise.all(
    Array.from({ length: parts }, (_, i) => echoLength(String.fromCharCode(97 + (i % 26)).repeat(each))),
  );
  return lengths.reduce((a, b) => a + b, 0);
}

async function greetingWorkflow(name) {
  return await greet(name);
}

module.exports = {
  featureWorkflow,
  childWorkflow,
  counterWorkflow,
  activityFailureWorkflow,
  workflowFailureWorkflow,
  largeCompletionWorkflow,
  greetingWorkflow,
};
