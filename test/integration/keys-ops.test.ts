import type { TransactWriteItem } from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditContext, AuditTrail } from '../../lib/audit/trail.js';
import { Envelope } from '../../lib/crypto/envelope.js';
import { BranchKeyProvider } from '../../lib/keys/branch-keys.js';
import { KeyAdmin } from '../../lib/keys/key-admin.js';
import { keySettings } from '../../lib/keys/key-settings.js';
import { rewrapTick } from '../../lib/keys/rewrap-schedule.js';
import { LocalRootKeys } from '../../lib/keys/root-keys.js';
import { openLocalStorageMacKey } from '../../lib/keys/storage-mac.js';
import { ControlRecords } from '../../lib/store/control-records.js';
import { createHarness, type Harness } from '../support/harness.js';

/** Keeps every finished request's audit context. */
class CapturingTrail implements AuditTrail {
  readonly records: AuditContext[] = [];
  withChange<T>(_ctx: AuditContext, run: (items: TransactWriteItem[]) => Promise<T>): Promise<T> {
    return run([]);
  }
  async finish(ctx: AuditContext): Promise<void> {
    this.records.push(structuredClone(ctx));
  }
}

const trail = new CapturingTrail();
let h: Harness;
let clock = Date.now();

/** Another instance of the same installation: its own control records, cache and clock. */
async function instance() {
  const control = new ControlRecords({
    client: h.client,
    table: h.tables.secrets,
    key: await openLocalStorageMacKey(h.dataDir),
    binding: h.tables.secrets,
  });
  const keys = new BranchKeyProvider({
    root: await LocalRootKeys.open(h.dataDir),
    control,
    binding: h.tables.secrets,
    now: () => clock++,
  });
  const admin = new KeyAdmin({
    keys,
    control,
    client: h.client,
    table: h.tables.secrets,
    binding: h.tables.secrets,
    rewrap: { itemsPerSecond: 100_000, pageSize: 3 },
    // A clock that moves on every reading: a budget of 1 ms ends after one page.
    now: () => clock++,
  });
  return { keys, admin, envelope: new Envelope(keys) };
}

beforeAll(async () => {
  h = await createHarness({ label: 'kops', audit: trail });
  for (let i = 0; i < 8; i++) {
    expect((await h.call('PUT', `/v1/secrets/ops/s${i}`, { body: { value: `v${i}` } })).status).toBe(200);
  }
});

describe('key operations', () => {
  it('when a key operation runs, its audit record names the key ids involved and no key material', async () => {
    await h.call('POST', '/v1/keys/rotate', { body: { folder: 'ops' } });
    const record = trail.records.find((r) => r.route === '/v1/keys/rotate');
    expect(record).toMatchObject({ action: 'admin', path: 'ops/', keyIds: ['bk:ops:1', 'bk:ops:2'] });
    expect(record?.decision?.allowed).toBe(true);
    await h.call('POST', '/v1/keys/retire', { body: { id: 'bk:ops:1' } });
    const refused = trail.records.find((r) => r.route === '/v1/keys/retire');
    expect(refused).toMatchObject({ action: 'admin', path: 'ops/', keyIds: ['bk:ops:1'] });
    // Nothing that looks like key material (base64 of 32+ bytes) in any key operation's record.
    const keyRecords = trail.records.filter((r) => r.route.startsWith('/v1/keys/'));
    expect(keyRecords).toHaveLength(2);
    expect(JSON.stringify(keyRecords)).not.toMatch(/[A-Za-z0-9+/]{43}=/);
  });

  it('when one instance flushes, another empties its cache at its next request after the flush bound', async () => {
    const a = await instance();
    const b = await instance();
    const id = { table: h.tables.secrets, path: 'ops/s0', version: 1 };
    const sealed = await b.envelope.seal('x', { ...id, path: 'ops/flush', version: 1 });
    await b.envelope.open(sealed, { ...id, path: 'ops/flush' });
    const misses = b.keys.cacheStats.misses;
    await a.admin.flush({ audit: {} } as never).catch(() => undefined);
    // The flush route is admin-only; the job's KeyAdmin has no authorizer and is refused.
    expect(b.keys.cache.size).toBe(1);
    // The flush itself, as an admin through the API.
    expect((await h.call('POST', '/v1/keys/flush')).status).toBe(200);
    await b.envelope.open(sealed, { ...id, path: 'ops/flush' });
    expect(b.keys.cacheStats.misses).toBe(misses); // within 30 s: still cached
    clock += 31_000;
    await b.envelope.open(sealed, { ...id, path: 'ops/flush' });
    expect(b.keys.cacheStats.misses).toBe(misses + 1);
    expect(b.keys.rootOps.decrypt).toBeGreaterThan(0);
  });

  it('when the schedule ticks with a small budget, a pass continues over several ticks and the next starts only when due', async () => {
    const { admin } = await instance();
    let ticks = 0;
    let tick = await rewrapTick(admin, { everySeconds: 3600, budgetMs: 0, now: () => clock });
    while (tick.cursor?.done !== true && ticks < 50) {
      ticks++;
      // A budget of 0 still makes progress: one page per tick (3 items).
      tick = await rewrapTick(admin, { everySeconds: 3600, budgetMs: 1, now: () => clock });
      expect(tick.ran).toBe('continued');
    }
    expect(tick.cursor?.done).toBe(true);
    expect(ticks).toBeGreaterThan(1);
    expect((await rewrapTick(admin, { everySeconds: 3600, budgetMs: 1, now: () => clock })).ran).toBe('idle');
    clock += 3_601_000;
    expect((await rewrapTick(admin, { everySeconds: 3600, budgetMs: 60_000, now: () => clock })).ran).toBe(
      'started',
    );
  });

  it('when retired key material is older than 35 days, the schedule destroys it', async () => {
    const { admin, keys } = await instance();
    expect((await h.call('POST', '/v1/keys/retire', { body: { id: 'bk:ops:1' } })).status).toBe(200);
    clock += 36 * 86_400_000;
    const tick = await rewrapTick(admin, { everySeconds: 0, budgetMs: 1, now: () => clock });
    expect(tick.destroyed).toEqual(['bk:ops:1']);
    const ring = await keys.readKeyring('ops');
    const v1 = ring?.payload.versions.find((x) => x.v === 1);
    expect(v1?.state).toBe('destroyed');
    expect(v1?.wrapped).toBeUndefined();
  });

  it('when the root is rotated and then reverted, the previous root is active again and wraps the branch keys', async () => {
    const before = (await h.call('GET', '/v1/keys/status')).body.root.active;
    const rotated = await h.call('POST', '/v1/keys/rotate', { body: { root: true } });
    expect(rotated.body.from).toBe(before);
    const reverted = await h.call('POST', '/v1/keys/revert', { body: { root: true } });
    expect(reverted.status).toBe(200);
    expect(reverted.body.root).toMatchObject({ from: rotated.body.to, to: before });
    const status = (await h.call('GET', '/v1/keys/status')).body;
    expect(status.root.active).toBe(before);
    expect(
      status.folders[0].versions.every(
        (v: { root: string; state: string }) => v.state === 'destroyed' || v.root === before,
      ),
    ).toBe(true);
    await h.call('POST', '/v1/keys/flush');
    expect((await h.call('GET', '/v1/secrets/ops/s1')).body.value).toBe('v1');
    // Nothing left to go back to.
    expect((await h.call('POST', '/v1/keys/revert', { body: { root: true } })).body.error.code).toBe(
      'key_state_conflict',
    );
  });

  it('reads the cache and re-wrap settings from the environment, and refuses nonsense', () => {
    expect(keySettings({})).toEqual({
      keyCache: { maxAgeSeconds: 300, maxUses: 100_000 },
      rewrapEverySeconds: 604_800,
    });
    expect(keySettings({ COFFER_KEY_CACHE_SECONDS: '0', COFFER_KEY_CACHE_USES: '10' }).keyCache).toEqual({
      maxAgeSeconds: 0,
      maxUses: 10,
    });
    expect(() => keySettings({ COFFER_KEY_CACHE_SECONDS: '-1' })).toThrow(/COFFER_KEY_CACHE_SECONDS/);
    expect(() => keySettings({ COFFER_REWRAP_EVERY_SECONDS: 'weekly' })).toThrow(
      /COFFER_REWRAP_EVERY_SECONDS/,
    );
  });
});
