import { beforeAll, describe, expect, it } from 'vitest';
import { countStorageCalls, type StorageCallCounter } from '../../lib/store/call-counter.js';
import { createHarness, type Harness } from '../support/harness.js';

/*
 * How many DynamoDB calls each request type makes, counted on the wire by an SDK middleware on the
 * client the store and the signed audit trail share (the servers' wiring: one client for both).
 * The counts are asserted exactly, so that a change which adds a round trip shows up here; a
 * change that removes one (issue 18's storage work) lowers them here on purpose.
 */

let h: Harness;
let calls: StorageCallCounter;
const BATCH = Array.from({ length: 20 }, (_, i) => `calls/batch/s${String(i).padStart(2, '0')}`);

/** The calls one request made, by operation. */
async function callsOf(method: string, route: string, body?: unknown) {
  calls.take();
  const res = await h.call(method, route, body === undefined ? {} : { body });
  expect(res.status, res.text).toBe(200);
  return calls.take();
}

beforeAll(async () => {
  h = await createHarness({
    label: 'calls',
    audit: 'dynamo',
    clientWrapper: (client) => {
      calls = countStorageCalls(client);
      return client;
    },
  });
  for (const path of ['calls/one', ...BATCH]) {
    expect((await h.call('PUT', `/v1/secrets/${path}`, { body: { value: `v-${path}` } })).status).toBe(200);
  }
  // A second version, so that `previous` names one.
  expect((await h.call('PUT', '/v1/secrets/calls/one', { body: { value: 'v-calls/one-2' } })).status).toBe(
    200,
  );
  // The audit chain's start (its certificate) is behind us: every request below is a steady one.
  calls.take();
});

describe('storage calls per request', () => {
  it('when a secret is read, it makes 2: the head with its current item in one batch, and the audit record', async () => {
    expect(await callsOf('GET', '/v1/secrets/calls/one')).toEqual({ BatchGetItem: 1, PutItem: 1 });
  });

  it('when a staged or numbered version other than the current one is read, it makes 3: the version item too', async () => {
    expect(await callsOf('GET', '/v1/secrets/calls/one?stage=previous')).toEqual({
      BatchGetItem: 1,
      GetItem: 1,
      PutItem: 1,
    });
    expect(await callsOf('GET', '/v1/secrets/calls/one?version=1')).toEqual({
      BatchGetItem: 1,
      GetItem: 1,
      PutItem: 1,
    });
  });

  it('when a secret gets a new version, it makes 3: the head, the folder keyring, then one transaction with the audit record', async () => {
    // The keyring (which branch key is active) is read on every write, so a rotation is used by
    // every instance's next write; the branch key itself comes from the cache (docs/keys.md).
    expect(await callsOf('PUT', '/v1/secrets/calls/one', { value: 'next' })).toEqual({
      GetItem: 2,
      TransactWriteItems: 1,
    });
  });

  it('when 20 secrets are read in one batch, it makes 2: one BatchGetItem of 20 heads and current items, and one audit record', async () => {
    expect(await callsOf('POST', '/v1/batch-get', { paths: BATCH })).toEqual({ BatchGetItem: 1, PutItem: 1 });
  });

  it('when a folder is listed, it makes 2: one query of its head partition and the audit record', async () => {
    expect(await callsOf('GET', '/v1/list?prefix=calls/batch/&limit=10')).toEqual({ Query: 1, PutItem: 1 });
  });

  it('when health is asked, it makes none: it answers from memory and is not audited', async () => {
    calls.take();
    const res = await h.call('GET', '/v1/health', { token: null });
    expect(res.status).toBe(200);
    expect(calls.take()).toEqual({});
  });

  it('when readiness is asked, it makes 2: one read of the secrets table and the audit record', async () => {
    expect(await callsOf('GET', '/v1/ready')).toEqual({ GetItem: 1, PutItem: 1 });
  });
});
