import { beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await createHarness({ label: 'api' });
});

const put = (path: string, body: unknown, headers?: Record<string, string>) =>
  h.call('PUT', `/v1/secrets/${path}`, { body, ...(headers ? { headers } : {}) });

describe('secrets API: versions', () => {
  it('when a secret is written twice, it keeps both versions and reads the latest by default', async () => {
    const first = await put('team-a/db/password', { value: 'one' });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ path: 'team-a/db/password', version: 1 });
    expect(Date.parse(first.body.createdAt)).not.toBeNaN();
    const second = await put('team-a/db/password', { value: 'two' });
    expect(second.body.version).toBe(2);
    const latest = await h.call('GET', '/v1/secrets/team-a/db/password');
    expect(latest.status).toBe(200);
    expect(latest.body).toEqual({
      path: 'team-a/db/password',
      version: 2,
      type: 'text',
      value: 'two',
      createdAt: second.body.createdAt,
    });
    const v1 = await h.call('GET', '/v1/secrets/team-a/db/password?version=1');
    expect(v1.body).toMatchObject({ version: 1, value: 'one' });
  });

  it('when a version does not exist, it answers 404 not_found', async () => {
    await put('versions/missing', { value: 'x' });
    for (const v of ['2', '99']) {
      const res = await h.call('GET', `/v1/secrets/versions/missing?version=${v}`);
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('not_found');
    }
    const none = await h.call('GET', '/v1/secrets/versions/never-written');
    expect(none.status).toBe(404);
    expect(none.body.error).toMatchObject({ code: 'not_found' });
    expect(typeof none.body.error.requestId).toBe('string');
  });

  it('when values hold unicode, newlines and the empty string, it returns them byte for byte', async () => {
    for (const [i, value] of ['', 'line1\nline2\n', 'ключ 🔑 \u0000 end', ' spaced '].entries()) {
      await put(`unicode/v${i}`, { value });
      const res = await h.call('GET', `/v1/secrets/unicode/v${i}`);
      expect(res.body.value).toBe(value);
    }
  });

  it('when a path is percent-encoded, it names the same secret', async () => {
    await put('enc/a.b_c-d', { value: 'e1' });
    const res = await h.call('GET', '/v1/secrets/enc%2Fa.b_c-d');
    expect(res.body).toMatchObject({ path: 'enc/a.b_c-d', value: 'e1' });
  });
});

describe('secrets API: check-and-set', () => {
  it('when cas is 0, it writes only if the secret is absent', async () => {
    expect((await put('cas/new', { value: 'a', cas: 0 })).status).toBe(200);
    const again = await put('cas/new', { value: 'b', cas: 0 });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('cas_conflict');
    expect((await h.call('GET', '/v1/secrets/cas/new')).body.value).toBe('a');
  });

  it('when cas names the latest version, it writes; a stale cas is 409 and changes nothing', async () => {
    await put('cas/seq', { value: 'v1' });
    expect((await put('cas/seq', { value: 'v2', cas: 1 })).body.version).toBe(2);
    const stale = await put('cas/seq', { value: 'v3', cas: 1 });
    expect(stale.status).toBe(409);
    expect(stale.body.error.code).toBe('cas_conflict');
    const meta = await h.call('GET', '/v1/meta/cas/seq');
    expect(meta.body.currentVersion).toBe(2);
    expect((await put('cas/absent', { value: 'x', cas: 3 })).status).toBe(409);
    expect((await h.call('GET', '/v1/secrets/cas/absent')).status).toBe(404);
  });
});

describe('secrets API: idempotency', () => {
  it('when a write is retried with the same Idempotency-Key and body, it creates one version and answers the same', async () => {
    const headers = { 'idempotency-key': 'retry-1' };
    const first = await put('idem/a', { value: 'same' }, headers);
    const second = await put('idem/a', { value: 'same' }, headers);
    expect(second.status).toBe(200);
    expect(second.body).toEqual(first.body);
    const meta = await h.call('GET', '/v1/meta/idem/a');
    expect(meta.body.versions.map((v: { version: number }) => v.version)).toEqual([1]);
  });

  it('when concurrent retries carry the same key, exactly one version is written', async () => {
    const headers = { 'idempotency-key': 'burst-1' };
    const results = await Promise.all(
      Array.from({ length: 8 }, () => put('idem/burst', { value: 'b' }, headers)),
    );
    const ok = results.filter((r) => r.status === 200);
    expect(ok.length).toBeGreaterThan(0);
    for (const r of ok) expect(r.body.version).toBe(1);
    for (const r of results.filter((r) => r.status !== 200)) expect(r.status).toBe(409);
    const meta = await h.call('GET', '/v1/meta/idem/burst');
    expect(meta.body.versions).toHaveLength(1);
  });

  it('when a key is reused with a different value, it is refused and nothing is written', async () => {
    const headers = { 'idempotency-key': 'reuse-1' };
    await put('idem/b', { value: 'first' }, headers);
    const res = await put('idem/b', { value: 'second' }, headers);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('idempotency_key_reused');
    expect(res.text).not.toContain('first');
    expect((await h.call('GET', '/v1/secrets/idem/b')).body).toMatchObject({ version: 1, value: 'first' });
  });

  it('when the key is malformed, it answers 400', async () => {
    const res = await put('idem/c', { value: 'x' }, { 'idempotency-key': 'bad key with spaces' });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
  });
});

describe('secrets API: soft delete, restore, purge, destroy', () => {
  it('when a secret is deleted, reads give 404 until it is restored', async () => {
    await put('del/a', { value: 'keep-me' });
    const del = await h.call('DELETE', '/v1/secrets/del/a');
    expect(del.status).toBe(200);
    const window = Date.parse(del.body.purgeAt) - Date.parse(del.body.deletedAt);
    expect(window).toBe(7 * 86_400_000);
    expect((await h.call('GET', '/v1/secrets/del/a')).status).toBe(404);
    expect((await h.call('GET', '/v1/secrets/del/a?version=1')).status).toBe(404);
    const write = await put('del/a', { value: 'new' });
    expect(write.status).toBe(409);
    expect(write.body.error.code).toBe('secret_deleted');
    expect((await h.call('DELETE', '/v1/secrets/del/a')).status).toBe(404);
    const restored = await h.call('POST', '/v1/restore/del/a');
    expect(restored.status).toBe(200);
    expect((await h.call('GET', '/v1/secrets/del/a')).body.value).toBe('keep-me');
    expect((await h.call('POST', '/v1/restore/del/a')).status).toBe(404);
  });

  it('when recoveryDays is outside 7..30 or not a number, it answers 400 and keeps the secret', async () => {
    await put('del/b', { value: 'x' });
    for (const q of ['6', '31', 'abc', '7.5', '-7']) {
      const res = await h.call('DELETE', `/v1/secrets/del/b?recoveryDays=${q}`);
      expect(res.status, q).toBe(400);
    }
    expect((await h.call('DELETE', '/v1/secrets/del/b?recoveryDays=30')).status).toBe(200);
  });

  it('when the recovery window has passed, the purge removes the secret for good and the path is free again', async () => {
    let now = new Date('2030-01-01T00:00:00Z');
    const timed = await createHarness({ label: 'purge', now: () => now });
    await timed.call('PUT', '/v1/secrets/p/gone', { body: { value: 'old' } });
    await timed.call('PUT', '/v1/secrets/p/gone', { body: { value: 'older' } });
    await timed.call('PUT', '/v1/secrets/p/kept', { body: { value: 'k' } });
    await timed.call('DELETE', '/v1/secrets/p/gone?recoveryDays=7');
    await timed.call('DELETE', '/v1/secrets/p/kept?recoveryDays=30');
    now = new Date('2030-01-07T23:00:00Z');
    expect(await timed.service.purgeExpired()).toBe(0);
    now = new Date('2030-01-08T00:00:01Z');
    // Past the window, reads and restore already treat it as gone, before the purge runs.
    expect((await timed.call('POST', '/v1/restore/p/gone')).status).toBe(404);
    expect(await timed.service.purgeExpired()).toBe(1);
    expect(await timed.store.getHead('p/gone')).toBeUndefined();
    expect(await timed.store.listVersions('p/gone')).toEqual([]);
    expect((await timed.call('POST', '/v1/restore/p/kept')).status).toBe(200);
    const again = await timed.call('PUT', '/v1/secrets/p/gone', { body: { value: 'fresh' } });
    expect(again.body.version).toBe(1);
  });

  it('when the window has passed but the purge has not run, the path is already free: a write starts a new secret', async () => {
    let now = new Date('2030-02-01T00:00:00Z');
    const timed = await createHarness({ label: 'purgewrite', now: () => now });
    await timed.call('PUT', '/v1/secrets/w/old', {
      body: { value: 'a', description: 'old one', tags: { env: 'prod' } },
    });
    await timed.call('PUT', '/v1/secrets/w/old', { body: { value: 'b' } });
    expect((await timed.call('DELETE', '/v1/secrets/w/old')).status).toBe(200);
    now = new Date('2030-02-07T23:59:59Z');
    // Inside the window: still deleted, restorable, not writable.
    expect((await timed.call('PUT', '/v1/secrets/w/old', { body: { value: 'c' } })).body.error.code).toBe(
      'secret_deleted',
    );
    expect((await timed.call('GET', '/v1/meta/w/old')).body.deletedAt).toBeDefined();
    now = new Date('2030-02-08T00:00:01Z');
    // Past it, every route treats the secret as gone before any purge ran.
    for (const [method, route, body] of [
      ['GET', '/v1/secrets/w/old', undefined],
      ['GET', '/v1/secrets/w/old?version=1', undefined],
      ['GET', '/v1/meta/w/old', undefined],
      ['POST', '/v1/restore/w/old', undefined],
      ['POST', '/v1/destroy/w/old', { versions: [1] }],
      ['PATCH', '/v1/meta/w/old', { description: 'x' }],
      ['DELETE', '/v1/secrets/w/old', undefined],
    ] as const) {
      const res = await timed.call(method, route, body ? { body } : {});
      expect(res.status, `${method} ${route}`).toBe(404);
    }
    expect((await timed.call('GET', '/v1/list?prefix=w/')).body.items).toEqual([]);
    const fresh = await timed.call('PUT', '/v1/secrets/w/old', { body: { value: 'new', cas: 0 } });
    expect(fresh.status).toBe(200);
    expect(fresh.body.version).toBe(1);
    expect((await timed.call('GET', '/v1/secrets/w/old')).body.value).toBe('new');
    const meta = await timed.call('GET', '/v1/meta/w/old');
    expect(meta.body).toMatchObject({ currentVersion: 1, tags: {} });
    expect(meta.body.description).toBeUndefined();
    expect(meta.body.deletedAt).toBeUndefined();
    expect(meta.body.versions.map((v: { version: number }) => v.version)).toEqual([1]);
    // The purge routine then finds nothing left to do, and leaves the new secret alone.
    expect(await timed.service.purgeExpired()).toBe(0);
    expect((await timed.call('GET', '/v1/secrets/w/old')).body.value).toBe('new');
  });

  it('when a deleted secret is restored before the purge reaches it, the purge leaves it and its versions', async () => {
    let now = new Date('2030-03-01T00:00:00Z');
    const timed = await createHarness({ label: 'purgerace', now: () => now });
    await timed.call('PUT', '/v1/secrets/r/x', { body: { value: 'v' } });
    const del = await timed.call('DELETE', '/v1/secrets/r/x');
    await timed.call('POST', '/v1/restore/r/x');
    now = new Date('2030-04-01T00:00:00Z');
    // A purge holding the stale index entry of the first deletion.
    expect(await timed.store.purge('r/x', del.body.purgeAt)).toBe(false);
    expect((await timed.call('GET', '/v1/secrets/r/x')).body.value).toBe('v');
    expect(await timed.store.listVersions('r/x')).toHaveLength(1);
  });

  it('when versions are destroyed, their values are erased and reads of them give 404; others remain', async () => {
    await put('destroy/a', { value: 'v1' });
    await put('destroy/a', { value: 'v2' });
    await put('destroy/a', { value: 'v3' });
    const res = await h.call('POST', '/v1/destroy/destroy/a', { body: { versions: [1, 3] } });
    expect(res.status).toBe(200);
    expect(res.body.destroyed).toEqual([1, 3]);
    expect((await h.call('GET', '/v1/secrets/destroy/a?version=1')).status).toBe(404);
    expect((await h.call('GET', '/v1/secrets/destroy/a')).status).toBe(404);
    expect((await h.call('GET', '/v1/secrets/destroy/a?version=2')).body.value).toBe('v2');
    const stored = await h.store.getVersion('destroy/a', 1);
    expect(stored?.destroyed).toBe(true);
    expect(stored?.sealed).toBeUndefined();
    const meta = await h.call('GET', '/v1/meta/destroy/a');
    expect(meta.body.versions.map((v: { destroyed: boolean }) => v.destroyed)).toEqual([true, false, true]);
    expect((await h.call('POST', '/v1/destroy/destroy/a', { body: { versions: [9] } })).status).toBe(404);
    expect((await h.call('POST', '/v1/destroy/destroy/a', { body: { versions: [] } })).status).toBe(400);
    expect((await h.call('POST', '/v1/destroy/destroy/a', { body: { versions: ['1'] } })).status).toBe(400);
  });
});

describe('secrets API: metadata and max versions', () => {
  it('when description and tags are written, metadata shows them and never a value', async () => {
    await put('meta/a', {
      value: 'hidden-value-123',
      description: 'db password',
      tags: { env: 'prod', team: 'a' },
    });
    const meta = await h.call('GET', '/v1/meta/meta/a');
    expect(meta.status).toBe(200);
    expect(meta.body).toMatchObject({
      path: 'meta/a',
      currentVersion: 1,
      description: 'db password',
      tags: { env: 'prod', team: 'a' },
      maxVersions: 100,
    });
    expect(meta.text).not.toContain('hidden-value-123');
    const patched = await h.call('PATCH', '/v1/meta/meta/a', {
      body: { description: 'renamed', tags: { env: 'dev' } },
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({ description: 'renamed', tags: { env: 'dev' }, currentVersion: 1 });
    // A later write without tags keeps them.
    await put('meta/a', { value: 'v2' });
    expect((await h.call('GET', '/v1/meta/meta/a')).body.tags).toEqual({ env: 'dev' });
  });

  it('when maxVersions is reached, the oldest versions are pruned', async () => {
    await put('max/a', { value: 'v1' });
    expect((await h.call('PATCH', '/v1/meta/max/a', { body: { maxVersions: 3 } })).status).toBe(200);
    for (let i = 2; i <= 6; i++) await put('max/a', { value: `v${i}` });
    const meta = await h.call('GET', '/v1/meta/max/a');
    expect(meta.body.versions.map((v: { version: number }) => v.version)).toEqual([4, 5, 6]);
    expect((await h.call('GET', '/v1/secrets/max/a?version=3')).status).toBe(404);
    expect(await h.store.getVersion('max/a', 3)).toBeUndefined();
    expect((await h.call('GET', '/v1/secrets/max/a?version=4')).body.value).toBe('v4');
  });

  it('when maxVersions is lowered, versions beyond it are pruned at once', async () => {
    for (let i = 1; i <= 5; i++) await put('max/b', { value: `v${i}` });
    const res = await h.call('PATCH', '/v1/meta/max/b', { body: { maxVersions: 2 } });
    expect(res.body.versions.map((v: { version: number }) => v.version)).toEqual([4, 5]);
    expect(await h.store.getVersion('max/b', 1)).toBeUndefined();
  });

  it('when the default applies, a secret keeps its last 100 versions', async () => {
    for (let i = 1; i <= 102; i++) await h.service.put(adminCaller(), 'max/default', { value: `v${i}` });
    const meta = await h.call('GET', '/v1/meta/max/default');
    expect(meta.body.versions).toHaveLength(100);
    expect(meta.body.versions[0].version).toBe(3);
  });

  it('when the patch is empty or malformed, it answers 400 and changes nothing', async () => {
    await put('meta/b', { value: 'x', tags: { a: 'b' } });
    for (const body of [
      {},
      { maxVersions: 0 },
      { maxVersions: 1001 },
      { tags: { 'bad key': 'x' } },
      { extra: 1 },
    ]) {
      const res = await h.call('PATCH', '/v1/meta/meta/b', { body });
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    expect((await h.call('GET', '/v1/meta/meta/b')).body.tags).toEqual({ a: 'b' });
  });
});

function adminCaller() {
  return {
    principal: {
      type: 'User' as const,
      id: 'dev:dev-admin',
      groups: ['admins'],
      attributes: {},
      authMethod: 'dev' as const,
    },
    context: { authMethod: 'dev' as const, sourceIp: '127.0.0.1', time: 0 },
    audit: {
      requestId: 'r',
      time: '',
      method: 'PUT',
      route: '',
      sourceIp: '',
      userAgent: '',
      written: false,
    },
  };
}
