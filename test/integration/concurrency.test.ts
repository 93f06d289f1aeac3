import {
  type DynamoDBClient,
  TransactionCanceledException,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await createHarness({ label: 'conc' });
});

async function versionsOf(harness: Harness, path: string): Promise<number[]> {
  return (await harness.store.listVersions(path)).map((v) => v.version);
}

describe('concurrent writers', () => {
  it('when 50 writers race with cas on one path, each gets a distinct version or a 409, and versions are gapless', async () => {
    await h.call('PUT', '/v1/secrets/race/one', { body: { value: 'seed' } });
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const meta = await h.call('GET', '/v1/meta/race/one');
        const res = await h.call('PUT', '/v1/secrets/race/one', {
          body: { value: `writer-${i}`, cas: meta.body.currentVersion },
        });
        return { i, res };
      }),
    );
    const ok = results.filter((r) => r.res.status === 200);
    const conflicts = results.filter((r) => r.res.status === 409);
    expect(ok.length + conflicts.length).toBe(50);
    expect(ok.length).toBeGreaterThan(0);
    for (const c of conflicts) expect(c.res.body.error.code).toBe('cas_conflict');
    const won = ok.map((r) => r.res.body.version).sort((x, y) => x - y);
    expect(new Set(won).size).toBe(won.length);
    expect(won).toEqual(Array.from({ length: ok.length }, (_, k) => k + 2));
    expect(await versionsOf(h, 'race/one')).toEqual(Array.from({ length: ok.length + 1 }, (_, k) => k + 1));
    // Every stored version holds the value of the writer that was told it won that version.
    for (const r of ok) {
      const got = await h.call('GET', `/v1/secrets/race/one?version=${r.res.body.version}`);
      expect(got.body.value).toBe(`writer-${r.i}`);
    }
  });

  // Up to a few thousand requests while 50 writers contend: room for a busy CI machine.
  it('when 50 writers retry their cas until they win, exactly versions 1..50 exist, each written once', async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        for (let attempt = 0; attempt < 500; attempt++) {
          const meta = await h.call('GET', '/v1/meta/race/two');
          const cas = meta.status === 404 ? 0 : meta.body.currentVersion;
          const res = await h.call('PUT', '/v1/secrets/race/two', { body: { value: `w${i}`, cas } });
          if (res.status === 200) return { i, version: res.body.version as number };
          expect(res.status).toBe(409);
        }
        throw new Error('writer starved');
      }),
    );
    expect(results.map((r) => r.version).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 50 }, (_, k) => k + 1),
    );
    expect(await versionsOf(h, 'race/two')).toEqual(Array.from({ length: 50 }, (_, k) => k + 1));
  }, 120_000);

  it('when the first writes of new folders race, every one succeeds (a write in flight is not a rollback)', async () => {
    // Each folder's keyring is created by one of its writers while the others' reads of it are in
    // flight: a read sent before the record existed answers "absent", which is no rollback.
    const res = (
      await Promise.all(
        Array.from({ length: 8 }, (_, f) =>
          Promise.all(
            Array.from({ length: 15 }, (_, i) =>
              h.call('PUT', `/v1/secrets/fresh${f}/s${i}`, { body: { value: `v${i}` } }),
            ),
          ),
        ),
      )
    ).flat();
    expect(res.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.text}`)).toEqual([]);
  });

  it('when writers race without cas, no version is lost or written twice', async () => {
    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        h.call('PUT', '/v1/secrets/race/three', { body: { value: `x${i}` } }),
      ),
    );
    const ok = results.filter((r) => r.status === 200).map((r) => r.body.version as number);
    for (const r of results.filter((r) => r.status !== 200)) expect(r.status).toBe(409);
    expect(new Set(ok).size).toBe(ok.length);
    expect(await versionsOf(h, 'race/three')).toEqual([...ok].sort((x, y) => x - y));
    expect(ok.sort((x, y) => x - y)).toEqual(Array.from({ length: ok.length }, (_, k) => k + 1));
  });
});

function conflictingClient(
  client: DynamoDBClient,
  conflicts: { remaining: number; calls: number },
): DynamoDBClient {
  const wrapped = Object.create(client) as DynamoDBClient;
  wrapped.send = (async (command: unknown) => {
    if (command instanceof TransactWriteItemsCommand) {
      conflicts.calls++;
      if (conflicts.remaining > 0) {
        conflicts.remaining--;
        throw new TransactionCanceledException({
          message: 'Transaction cancelled',
          $metadata: {},
          CancellationReasons: (command.input.TransactItems ?? []).map((_, i) =>
            i === 0 ? { Code: 'TransactionConflict' } : { Code: 'None' },
          ),
        });
      }
    }
    return client.send(command as never);
  }) as DynamoDBClient['send'];
  return wrapped;
}

describe('transaction conflicts', () => {
  it('when DynamoDB cancels with TransactionConflict a few times, the write is retried and succeeds once', async () => {
    const state = { remaining: 2, calls: 0 };
    const t = await createHarness({
      label: 'tconf',
      clientWrapper: (c) => conflictingClient(c, state),
      store: { transactionAttempts: 4, transactionBackoffMs: 5 },
    });
    const res = await t.call('PUT', '/v1/secrets/tc/a', { body: { value: 'x' } });
    expect(res.status).toBe(200);
    expect(state.calls).toBe(3);
    expect(await versionsOf(t, 'tc/a')).toEqual([1]);
  });

  it('when conflicts persist on a write with cas, the answer is 409 cas_conflict (never 500) and nothing is stored', async () => {
    const state = { remaining: 1000, calls: 0 };
    const t = await createHarness({
      label: 'tconf2',
      clientWrapper: (c) => conflictingClient(c, state),
      store: { transactionAttempts: 4, transactionBackoffMs: 5 },
    });
    // With cas the caller asked for a check: a lost race is its 409 (plain writes: plain-writes.test.ts).
    const res = await t.call('PUT', '/v1/secrets/tc/b', { body: { value: 'x', cas: 0 } });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('cas_conflict');
    expect(state.calls).toBe(4);
    expect(await t.store.getHead('tc/b')).toBeUndefined();
    const del = await t.call('DELETE', '/v1/secrets/tc/b');
    expect(del.status).toBe(404);
  });
});
