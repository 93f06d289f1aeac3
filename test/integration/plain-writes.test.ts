import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type DynamoDBClient,
  TransactionCanceledException,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { jsonLogger } from '../../lib/log.js';
import { createHarness, type Harness } from '../support/harness.js';

/*
 * A PUT without `cas` asked for no check: a concurrent change is not its failure. It is tried
 * again (bounded, with jitter), each attempt re-reading the head and deciding again; past the
 * bound it is 503 write_contention (retryable), never 409. With `cas`, a lost race stays 409.
 */

/** Calls `before` once, just before the first transaction that writes a version of `path`. */
function interceptingClient(
  client: DynamoDBClient,
  path: string,
  hook: { before?: () => Promise<void> },
): DynamoDBClient {
  const wrapped = Object.create(client) as DynamoDBClient;
  wrapped.send = (async (command: unknown) => {
    if (command instanceof TransactWriteItemsCommand && hook.before) {
      const writesVersion = (command.input.TransactItems ?? []).some(
        (i) => i.Put?.Item?.sk?.S?.startsWith('V#') && i.Put.Item.path?.S === path,
      );
      if (writesVersion) {
        const before = hook.before;
        hook.before = undefined;
        await before();
      }
    }
    return client.send(command as never);
  }) as DynamoDBClient['send'];
  return wrapped;
}

/** Cancels every transaction with a condition failure, as if another writer always won. */
function alwaysLosingClient(client: DynamoDBClient, state: { calls: number }): DynamoDBClient {
  const wrapped = Object.create(client) as DynamoDBClient;
  wrapped.send = (async (command: unknown) => {
    if (command instanceof TransactWriteItemsCommand) {
      state.calls++;
      throw new TransactionCanceledException({
        message: 'Transaction cancelled',
        $metadata: {},
        CancellationReasons: (command.input.TransactItems ?? []).map((_, i) =>
          i === 1 ? { Code: 'ConditionalCheckFailed' } : { Code: 'None' },
        ),
      });
    }
    return client.send(command as never);
  }) as DynamoDBClient['send'];
  return wrapped;
}

describe('plain writes (no cas)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness({ label: 'plain' });
  });

  it('when 20 PUTs without cas race on one existing secret, all succeed with distinct, gapless versions', async () => {
    expect((await h.call('PUT', '/v1/secrets/plain/one', { body: { value: 'seed' } })).status).toBe(200);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        h.call('PUT', '/v1/secrets/plain/one', { body: { value: `w${i}` } }),
      ),
    );
    for (const r of results) {
      expect(r.status, JSON.stringify(r.body)).not.toBe(409);
      if (r.status !== 200) expect(r.body.error.code).toBe('write_contention');
    }
    const ok = results.filter((r) => r.status === 200);
    expect(ok).toHaveLength(20);
    const versions = ok.map((r) => r.body.version as number).sort((a, b) => a - b);
    expect(versions).toEqual(Array.from({ length: 20 }, (_, k) => k + 2));
    // Each writer's value is the one stored under the version it was told.
    for (const [i, r] of results.entries()) {
      const got = await h.call('GET', `/v1/secrets/plain/one?version=${r.body.version}`);
      expect(got.body.value).toBe(`w${i}`);
    }
  });

  it('when the same race uses cas, losers still get 409 cas_conflict', async () => {
    const seed = await h.call('PUT', '/v1/secrets/plain/cas', { body: { value: 'seed' } });
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        h.call('PUT', '/v1/secrets/plain/cas', { body: { value: `c${i}`, cas: seed.body.version } }),
      ),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    for (const r of results.filter((r) => r.status !== 200)) {
      expect(r.status).toBe(409);
      expect(r.body.error.code).toBe('cas_conflict');
    }
  });

  it('when every attempt loses, the answer is 503 write_contention (retryable) after a bounded number of tries', async () => {
    const state = { calls: 0 };
    const t = await createHarness({
      label: 'plain-lose',
      clientWrapper: (c) => alwaysLosingClient(c, state),
      store: { transactionAttempts: 1, transactionBackoffMs: 1 },
    });
    const started = Date.now();
    const res = await t.call('PUT', '/v1/secrets/plain/lost', { body: { value: 'x' } });
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('write_contention');
    expect(state.calls).toBe(12);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await t.store.getHead('plain/lost')).toBeUndefined();
  });
});

describe('a plain write retried after a concurrent retag', () => {
  it('when a retag lands between its read and its commit and makes a forbid apply, the retried write is denied', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'coffer-plain-policies-'));
    await copyFile(
      fileURLToPath(new URL('../../policies/schema.cedarschema', import.meta.url)),
      join(dir, 'schema.cedarschema'),
    );
    await writeFile(
      join(dir, 'frozen.cedar'),
      `permit (principal, action, resource);
       forbid (principal, action == Coffer::Action::"write", resource is Coffer::Secret)
         when { resource.hasTag("frozen") && resource.getTag("frozen") == "yes" };`,
    );
    const authorizer = await CedarAuthorizer.fromDir(dir, { logger: jsonLogger(() => {}) });
    const hook: { before?: () => Promise<void> } = {};
    let t: Harness | undefined;
    t = await createHarness({
      label: 'plain-retag',
      authorizer,
      clientWrapper: (c) => interceptingClient(c, 'retag/x', hook),
    });
    const harness = t;
    expect((await harness.call('PUT', '/v1/secrets/retag/x', { body: { value: 'v1' } })).status).toBe(200);
    // Armed after the seed: the next version write of retag/x first lets a retag land.
    hook.before = async () => {
      const retag = await harness.call('PATCH', '/v1/meta/retag/x', { body: { tags: { frozen: 'yes' } } });
      expect(retag.status).toBe(200);
    };
    const res = await harness.call('PUT', '/v1/secrets/retag/x', { body: { value: 'v2' } });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('forbidden');
    const meta = await harness.call('GET', '/v1/meta/retag/x');
    expect(meta.body.currentVersion).toBe(1);
    expect(meta.body.tags).toEqual({ frozen: 'yes' });
    t = undefined;
  });
});
