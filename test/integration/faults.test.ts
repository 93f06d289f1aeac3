import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { faultyHarness } from '../support/fault-setup.js';
import { checkHistory, type FinalKey, readFinal, runWorkload } from '../support/history.js';

/**
 * A request's time bound under faults: the harness's SDK client makes 2 attempts of at most
 * 0.5 s to connect and 1.5 s to answer; the store and the audit trail may each meet one.
 */
const BOUND_MS = 12_000;

let f: Awaited<ReturnType<typeof faultyHarness>>;
beforeAll(async () => {
  f = await faultyHarness('faults');
});
afterAll(async () => {
  await f?.close();
});

async function timed(method: string, route: string, body?: unknown) {
  const started = performance.now();
  const res = await f.call(method, route, body);
  return { ...res, ms: performance.now() - started };
}

describe('the API between faults in the network to DynamoDB', () => {
  it('when every answer is delayed, requests succeed, only slower', async () => {
    f.proxy.set({ latencyMs: 100, jitterMs: 50 });
    const put = await timed('PUT', '/v1/secrets/faults/slow', { value: 'slow' });
    expect(put.status).toBe(200);
    const get = await timed('GET', '/v1/secrets/faults/slow');
    expect(get.status).toBe(200);
    expect((get.body as { value: string }).value).toBe('slow');
    expect(get.ms).toBeGreaterThanOrEqual(100);
    f.proxy.set({});
  });

  it('when every connection is reset or black-holed, requests fail with 503 within the bound, and nothing hangs', async () => {
    for (const faults of [{ resetRate: 1 }, { blackholeRate: 1 }]) {
      f.proxy.set(faults);
      const results = await Promise.all([
        timed('GET', '/v1/secrets/faults/slow'),
        timed('PUT', '/v1/secrets/faults/slow', { value: 'never' }),
        timed('GET', '/v1/list?prefix=faults/'),
      ]);
      for (const r of results) {
        expect(r.status, JSON.stringify(faults)).toBe(503);
        expect((r.body as { error: { code: string } }).error.code).toMatch(/^(storage|audit)_unavailable$/);
        expect(r.ms).toBeLessThan(BOUND_MS);
      }
    }
    f.proxy.set({});
    // The refused write may have reached the engine (half the faults deliver the request); either
    // way the secret holds one value per version and the first is intact.
    const final = await readFinal(f.call, 'faults/slow');
    expect(final?.versions.get(1)).toBe('slow');
  }, 60_000);

  it('when writers run through resets and black holes, every acknowledged write is kept once, and the audit log verifies', async () => {
    f.proxy.set({ latencyMs: 1, jitterMs: 10, resetRate: 0.15, blackholeRate: 0.03 });
    const keys = ['faults/w1', 'faults/w2'];
    const started = performance.now();
    // The faults are random: a round of 45 operations now and then meets none that costs a whole
    // request (both attempts of a call). Rounds go on, one after another, until one has, so that
    // every run checks the history across failed requests too.
    const history: Awaited<ReturnType<typeof runWorkload>> = [];
    for (let round = 0; round < 6 && !history.some((o) => o.status === 503); round++) {
      history.push(
        ...(await runWorkload(f.call, {
          keys,
          clients: 3,
          opsPerClient: 15,
          tag: `f${Date.now()}-${round}`,
        })),
      );
    }
    f.proxy.set({});
    for (const op of history) expect(op.completedAt - op.invokedAt).toBeLessThan(BOUND_MS);
    expect(performance.now() - started).toBeLessThan(60_000);
    const finals = new Map<string, FinalKey | undefined>();
    for (const key of keys) finals.set(key, await readFinal(f.call, key));
    expect(checkHistory(history, finals)).toEqual([]);
    expect(history.some((o) => o.status === 503)).toBe(true);
    const report = await f.verifyAudit();
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  }, 90_000);
});
