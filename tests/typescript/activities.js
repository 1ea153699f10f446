'use strict';
// Activities of the TypeScript SDK test worker (tests/typescript/sdk.js).

const { ApplicationFailure, Context } = require('@temporalio/activity');
const { checksum, makeText } = require('./payload');

async function greet(name) {
  return `Hello, ${name}!`;
}

// Heartbeats `steps` times, 300 ms apart: longer than the heartbeat timeout
// the workflow gives it (2 s), so it only succeeds if the heartbeats reach
// the server. The first attempt fails after heartbeating; the second one
// reports the heartbeat details the server kept from the first.
async function heartbeater(steps) {
  const ctx = Context.current();
  const { attempt, heartbeatDetails } = ctx.info;
  for (let i = 1; i <= steps; i++) {
    ctx.heartbeat(i);
    await ctx.sleep(300);
  }
  if (attempt === 1) {
    throw ApplicationFailure.retryable('first attempt fails after heartbeating', 'HeartbeatRetry');
  }
  return { attempt, resumedFrom: heartbeatDetails === undefined ? null : heartbeatDetails, steps };
}

// A result of `size` characters (the payload is a little larger: JSON quotes).
async function bigResult(size) {
  const data = makeText(size);
  return { data, checksum: checksum(data) };
}

// Always fails with a non-retryable ApplicationFailure carrying details.
async function declinePayment(card) {
  throw ApplicationFailure.create({
    type: 'PaymentDeclined',
    message: `card ${card} declined`,
    details: [{ code: 51, reason: 'insufficient funds' }, 'second detail'],
    nonRetryable: true,
  });
}

async function echoLength(text) {
  return text.length;
}

module.exports = { greet, heartbeater, bigResult, declinePayment, echoLength };
