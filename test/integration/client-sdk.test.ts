import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AuthorizationRequest, Authorizer, Decision } from '../../lib/authz/authorizer.js';
import {
  type ClientOptions,
  type CofferClientError,
  CofferConflictError,
  CofferForbiddenError,
  CofferNetworkError,
  CofferNotFoundError,
  CofferThrottledError,
  CofferUnauthenticatedError,
  CofferUnavailableError,
  createClient,
} from '../../packages/client/src/index.js';
import { createHarness, type Harness } from '../support/harness.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The admin may do anything; others: `hidden/` is invisible, `denied/` visible but unreadable. */
class TestAuthorizer implements Authorizer {
  readonly policySetHash = 'test';
  authorize({ principal, action, resource }: AuthorizationRequest): Decision {
    if (principal.id === 'dev:dev-admin') return { allowed: true, policyIds: ['admins'], errors: [] };
    if (resource.path.startsWith('hidden/')) return { allowed: false, policyIds: ['hidden'], errors: [] };
    if (resource.path.startsWith('denied/') && action === 'read') {
      return { allowed: false, policyIds: ['denied'], errors: [] };
    }
    return { allowed: true, policyIds: ['rest'], errors: [] };
  }
}

let h: Harness;
let server: ServerType;
let endpoint: string;
let reader: string;

beforeAll(async () => {
  h = await createHarness({ label: 'sdk', authorizer: new TestAuthorizer() });
  reader = await h.issuer.mint({ subject: 'reader', groups: [] });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

/**
 * A client whose every request is counted (and can be made to fail): `down` answers like a dead
 * network, `status` like a server answering that status.
 */
function counted(options: Partial<ClientOptions> = {}, token?: string) {
  const calls: string[] = [];
  const state: { down: boolean; status?: number; times?: number } = { down: false };
  const client = createClient({
    endpoint,
    auth: { token: token ?? h.token },
    retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 },
    ...options,
    fetch: (async (input: string | URL | Request, init?: RequestInit) => {
      calls.push(`${init?.method ?? 'GET'} ${new URL(String(input)).pathname}`);
      // `times` limits the failures to the next n requests.
      if (state.times !== undefined && state.times-- <= 0) return fetch(input, init);
      if (state.down) throw new TypeError('fetch failed');
      if (state.status !== undefined) {
        return new Response(
          JSON.stringify({
            error: {
              code: state.status === 429 ? 'throttled' : 'audit_unavailable',
              message: 'x',
              requestId: 'r',
            },
          }),
          {
            status: state.status,
            headers: { 'content-type': 'application/json' },
          },
        );
      }
      return fetch(input, init);
    }) as typeof fetch,
  });
  return { client, calls, state };
}

/** A clock the test moves by hand. */
function manualClock(start = 1_000_000) {
  const clock = { now: start, fn: () => clock.now };
  return clock;
}

describe('client: cache', () => {
  it('when a secret was read once, reading it again makes no request at all', async () => {
    const { client, calls } = counted();
    await client.put('cache/hit', 'v1');
    calls.length = 0;
    expect((await client.get('cache/hit')).value).toBe('v1');
    expect(calls).toEqual(['GET /v1/secrets/cache/hit']);
    for (let i = 0; i < 50; i++) expect((await client.get('cache/hit')).value).toBe('v1');
    expect(calls).toHaveLength(1);
    // A specific version is its own entry.
    await client.get('cache/hit', { version: 1 });
    await client.get('cache/hit', { version: 1 });
    expect(calls).toHaveLength(2);
    client.clearCache();
  });

  it('when the TTL has passed, the next read fetches the new value', async () => {
    const clock = manualClock();
    const { client, calls } = counted({ cache: { ttlMs: 60_000 }, clock: clock.fn });
    await h.call('PUT', '/v1/secrets/cache/ttl', { body: { value: 'old' } });
    expect((await client.get('cache/ttl')).value).toBe('old');
    await h.call('PUT', '/v1/secrets/cache/ttl', { body: { value: 'new' } });
    clock.now += 30_000;
    expect((await client.get('cache/ttl')).value).toBe('old');
    expect(calls).toHaveLength(1);
    clock.now += 30_001;
    expect((await client.get('cache/ttl')).value).toBe('new');
    expect(calls).toHaveLength(2);
    client.clearCache();
  });

  it('when a read falls in the refresh window, it answers from memory and refreshes in the background', async () => {
    const clock = manualClock();
    const { client, calls } = counted({ cache: { ttlMs: 60_000, refreshAheadMs: 10_000 }, clock: clock.fn });
    await h.call('PUT', '/v1/secrets/cache/ahead', { body: { value: 'a1' } });
    await client.get('cache/ahead');
    await h.call('PUT', '/v1/secrets/cache/ahead', { body: { value: 'a2' } });
    clock.now += 55_000;
    expect((await client.get('cache/ahead')).value).toBe('a1');
    await vi.waitFor(() => expect(calls).toHaveLength(2));
    await vi.waitFor(async () => expect((await client.get('cache/ahead')).value).toBe('a2'));
    expect(calls).toHaveLength(2);
    client.clearCache();
  });

  it('when a value was read since its fetch, the timer refreshes it before it expires', async () => {
    const { client, calls } = counted({ cache: { ttlMs: 400, refreshAheadMs: 200, maxStaleMs: 60_000 } });
    await h.call('PUT', '/v1/secrets/cache/timer', { body: { value: 't1' } });
    await client.get('cache/timer');
    await client.get('cache/timer');
    await h.call('PUT', '/v1/secrets/cache/timer', { body: { value: 't2' } });
    await vi.waitFor(() => expect(calls.length).toBeGreaterThanOrEqual(2), { timeout: 5000 });
    await vi.waitFor(async () => expect((await client.get('cache/timer')).value).toBe('t2'), {
      timeout: 5000,
    });
    client.clearCache();
  });

  it('when refreshes fail, it serves the stale value up to the maximum age, then fails', async () => {
    const clock = manualClock();
    const { client, calls, state } = counted({
      cache: { ttlMs: 60_000, maxStaleMs: 300_000 },
      clock: clock.fn,
      retry: { maxAttempts: 1 },
    });
    await h.call('PUT', '/v1/secrets/cache/stale', { body: { value: 'kept' } });
    await client.get('cache/stale');
    state.down = true;
    clock.now += 120_000;
    expect((await client.get('cache/stale')).value).toBe('kept');
    state.down = false;
    state.status = 503;
    clock.now += 170_000;
    expect((await client.get('cache/stale')).value).toBe('kept');
    expect(calls).toHaveLength(3);
    clock.now += 10_001; // 300 001 ms old
    await expect(client.get('cache/stale')).rejects.toBeInstanceOf(CofferUnavailableError);
    state.status = undefined;
    expect((await client.get('cache/stale')).value).toBe('kept');
    client.clearCache();
  });

  it('when the secret is deleted meanwhile, an expired value is dropped, never served stale', async () => {
    const clock = manualClock();
    const { client } = counted({ cache: { ttlMs: 1000, maxStaleMs: 600_000 }, clock: clock.fn });
    await h.call('PUT', '/v1/secrets/cache/revoked', { body: { value: 'gone-soon' } });
    await client.get('cache/revoked');
    await h.call('DELETE', '/v1/secrets/cache/revoked');
    clock.now += 1001;
    await expect(client.get('cache/revoked')).rejects.toBeInstanceOf(CofferNotFoundError);
    await expect(client.get('cache/revoked')).rejects.toBeInstanceOf(CofferNotFoundError);
  });

  it('when more values than maxEntries are read, the least recently used one is evicted', async () => {
    const { client, calls } = counted({ cache: { maxEntries: 2 } });
    for (const p of ['a', 'b', 'c']) await h.call('PUT', `/v1/secrets/lru/${p}`, { body: { value: p } });
    await client.get('lru/a');
    await client.get('lru/b');
    await client.get('lru/a'); // a is now the most recent
    await client.get('lru/c'); // evicts b
    expect(client.cachedValues).toBe(2);
    calls.length = 0;
    await client.get('lru/a');
    await client.get('lru/c');
    expect(calls).toHaveLength(0);
    await client.get('lru/b');
    expect(calls).toEqual(['GET /v1/secrets/lru/b']);
    client.clearCache();
  });

  it('when no cache options are given, a value is served from memory for 5 minutes, like the Lambda extension', async () => {
    const clock = manualClock();
    const { client, calls } = counted({ clock: clock.fn });
    await h.call('PUT', '/v1/secrets/cache/default', { body: { value: 'd' } });
    await client.get('cache/default');
    // Past the default refresh-ahead window (the last fifth), a read answers from memory and
    // refreshes in the background; before it, nothing is asked.
    clock.now += 4 * 60_000 - 1;
    await client.get('cache/default');
    expect(calls).toHaveLength(1);
    // Just past 5 minutes since the fetch, the read waits for a fresh value.
    clock.now += 60_000 + 2;
    await h.call('PUT', '/v1/secrets/cache/default', { body: { value: 'd2' } });
    expect((await client.get('cache/default')).value).toBe('d2');
    expect(calls).toHaveLength(2);
    client.clearCache();
  });

  it('when the client writes a secret, its cached values are dropped (read-your-writes)', async () => {
    const { client } = counted();
    await client.put('cache/rw', 'first');
    expect((await client.get('cache/rw')).value).toBe('first');
    await client.put('cache/rw', 'second');
    expect((await client.get('cache/rw')).value).toBe('second');
    await client.delete('cache/rw');
    await expect(client.get('cache/rw')).rejects.toBeInstanceOf(CofferNotFoundError);
    await client.restore('cache/rw');
    expect((await client.get('cache/rw')).value).toBe('second');
    client.clearCache();
  });
});

describe('client: batchGet', () => {
  beforeAll(async () => {
    for (const [path, value] of [
      ['batch/one', 'b-one'],
      ['batch/two', 'b-two'],
      ['denied/b', 'b-denied'],
      ['hidden/b', 'b-hidden'],
    ]) {
      await h.call('PUT', `/v1/secrets/${path}`, { body: { value } });
    }
  });

  it('when paths are allowed, denied, hidden and missing, it returns a value or a typed error for each', async () => {
    const { client, calls } = counted({}, reader);
    const results = await client.batchGet([
      'batch/one',
      'denied/b',
      'hidden/b',
      'batch/missing',
      'batch/two',
    ]);
    expect(calls).toEqual(['POST /v1/batch-get']);
    expect(results.map((r) => r.path)).toEqual([
      'batch/one',
      'denied/b',
      'hidden/b',
      'batch/missing',
      'batch/two',
    ]);
    const [one, denied, hidden, missing, two] = results;
    expect(one?.ok && one.secret.value).toBe('b-one');
    expect(two?.ok && two.secret.value).toBe('b-two');
    expect(!denied?.ok && denied?.error).toBeInstanceOf(CofferForbiddenError);
    expect(!hidden?.ok && hidden?.error).toBeInstanceOf(CofferNotFoundError);
    expect(!missing?.ok && missing?.error).toBeInstanceOf(CofferNotFoundError);
    if (hidden?.ok || missing?.ok) throw new Error('expected errors');
    expect([hidden?.error.code, hidden?.error.message]).toEqual([
      missing?.error.code,
      missing?.error.message,
    ]);
    // The values it got are cached: a get after a batch makes no request.
    expect((await client.get('batch/one')).value).toBe('b-one');
    expect(calls).toHaveLength(1);
    client.clearCache();
  });

  it('when cached values are fresh, only the others are asked for; long lists go 20 paths per request', async () => {
    const paths = Array.from({ length: 25 }, (_, i) => `many/p${i}`);
    for (const p of paths) await h.call('PUT', `/v1/secrets/${p}`, { body: { value: `value-${p}` } });
    const { client, calls } = counted();
    await client.get('many/p0');
    calls.length = 0;
    const results = await client.batchGet(paths);
    expect(results.every((r) => r.ok)).toBe(true);
    expect(results.map((r) => (r.ok ? r.secret.value : ''))).toEqual(paths.map((p) => `value-${p}`));
    expect(calls).toEqual(['POST /v1/batch-get', 'POST /v1/batch-get']);
    calls.length = 0;
    await client.batchGet(paths);
    expect(calls).toHaveLength(0);
    client.clearCache();
  });
});

describe('client: errors and retries', () => {
  it('when the server answers an error, the client throws the typed error with code, status and request id', async () => {
    const { client } = counted();
    const err = await client.get('nope/none').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CofferNotFoundError);
    expect(err).toMatchObject({ code: 'not_found', status: 404 });
    expect((err as CofferClientError).requestId).toMatch(/^[0-9a-f-]{36}$/);
    await client.put('errors/cas', 'x');
    await expect(client.put('errors/cas', 'y', { cas: 0 })).rejects.toBeInstanceOf(CofferConflictError);
    const bad = createClient({ endpoint, auth: { token: 'not-a-token' }, cache: false });
    await expect(bad.get('errors/cas')).rejects.toBeInstanceOf(CofferUnauthenticatedError);
  });

  it('when a read meets 503 or a network error, it retries with backoff and succeeds', async () => {
    const { client, calls, state } = counted({ cache: false });
    await client.put('retry/read', 'r');
    calls.length = 0;
    state.status = 503;
    state.times = 2;
    expect((await client.get('retry/read')).value).toBe('r');
    expect(calls).toHaveLength(3);
    calls.length = 0;
    state.status = undefined;
    state.down = true;
    state.times = 1;
    expect((await client.get('retry/read')).value).toBe('r');
    expect(calls).toHaveLength(2);
    calls.length = 0;
    state.times = undefined;
    await expect(client.get('retry/read')).rejects.toBeInstanceOf(CofferNetworkError);
    expect(calls).toHaveLength(3);
  });

  it('when a put is retried, every attempt carries the same Idempotency-Key and one version is written', async () => {
    const keys: (string | null)[] = [];
    let failFirst = true;
    const client = createClient({
      endpoint,
      auth: { token: h.token },
      retry: { baseDelayMs: 1, maxDelayMs: 5 },
      fetch: (async (input: string | URL | Request, init?: RequestInit) => {
        keys.push(new Headers(init?.headers).get('idempotency-key'));
        const res = await fetch(input, init);
        if (failFirst) {
          // The write happened, but its answer is lost: the retry must not write again.
          failFirst = false;
          throw new TypeError('fetch failed');
        }
        return res;
      }) as typeof fetch,
    });
    const result = await client.put('retry/put', 'once');
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(keys[1]).toBe(keys[0]);
    expect(result.version).toBe(1);
    expect((await h.call('GET', '/v1/meta/retry/put')).body.versions).toHaveLength(1);
  });

  it('when a generate is retried after its answer was lost, one value is generated and the answer describes it, never holding it', async () => {
    const keys: (string | null)[] = [];
    let failFirst = true;
    const client = createClient({
      endpoint,
      auth: { token: h.token },
      retry: { baseDelayMs: 1, maxDelayMs: 5 },
      fetch: (async (input: string | URL | Request, init?: RequestInit) => {
        keys.push(new Headers(init?.headers).get('idempotency-key'));
        const res = await fetch(input, init);
        if (failFirst) {
          failFirst = false;
          throw new TypeError('fetch failed');
        }
        return res;
      }) as typeof fetch,
    });
    const result = await client.generate('retry/key', { type: 'keypair', algorithm: 'ecdsa-p256' });
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(keys[1]).toBe(keys[0]);
    expect(result).toMatchObject({
      path: 'retry/key',
      version: 1,
      type: 'keypair',
      publicKey: { algorithm: 'ecdsa-p256' },
    });
    expect(JSON.stringify(result)).not.toMatch(/PRIVATE KEY/);
    expect((await h.call('GET', '/v1/meta/retry/key')).body.versions).toHaveLength(1);
    const value = JSON.parse((await client.get('retry/key')).value as string);
    expect(value.public_key).toBe(result.publicKey?.publicKey);
  });

  it('when a delete, restore or destroy meets 503 or 429, it is not repeated (no Idempotency-Key dedup)', async () => {
    const { client, calls, state } = counted({ cache: false });
    await client.put('retry/delete', 'd');
    calls.length = 0;
    state.status = 503;
    await expect(client.delete('retry/delete')).rejects.toBeInstanceOf(CofferUnavailableError);
    expect(calls).toHaveLength(1);
    state.status = 429;
    await expect(client.delete('retry/delete')).rejects.toBeInstanceOf(CofferThrottledError);
    await expect(client.restore('retry/delete')).rejects.toBeInstanceOf(CofferThrottledError);
    await expect(client.destroy('retry/delete', [1])).rejects.toBeInstanceOf(CofferThrottledError);
    expect(calls).toHaveLength(4);
    // Reads and puts (which carry an Idempotency-Key) are retried on 429.
    calls.length = 0;
    state.times = 2;
    expect((await client.get('retry/delete')).value).toBe('d');
    expect(calls).toHaveLength(3);
    calls.length = 0;
    state.times = 2;
    expect((await client.put('retry/delete', 'e')).version).toBe(2);
    expect(calls).toHaveLength(3);
  });

  it('when a delete cannot connect at all, it is retried (the request never reached the server)', async () => {
    const refused = Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
    let attempts = 0;
    const client = createClient({
      endpoint,
      auth: { token: h.token },
      retry: { baseDelayMs: 1, maxDelayMs: 5 },
      fetch: (async (input: string | URL | Request, init?: RequestInit) => {
        if (attempts++ === 0) throw refused;
        return fetch(input, init);
      }) as typeof fetch,
    });
    await client.put('retry/refused', 'r');
    attempts = 0;
    expect((await client.delete('retry/refused')).path).toBe('retry/refused');
    expect(attempts).toBe(2);
  });

  it('when a token provider is used and the server answers 401, it asks for a fresh token once', async () => {
    const asked: boolean[] = [];
    const client = createClient({
      endpoint,
      cache: false,
      auth: {
        tokenProvider: ({ forceRefresh }) => {
          asked.push(forceRefresh);
          return forceRefresh ? h.token : 'expired-token';
        },
      },
    });
    await client.put('provider/x', 'p');
    expect(asked).toEqual([false, true]);
    expect((await client.whoami()).id).toBe('dev:dev-admin');
  });
});

describe('client: list and history', () => {
  it('when a prefix has more secrets than a page, list yields every page', async () => {
    const { client } = counted();
    for (let i = 0; i < 5; i++) await client.put(`pages/s${i}`, `v${i}`);
    const pages = [];
    for await (const page of client.list('pages/', { limit: 2 })) pages.push(page);
    expect(pages.length).toBeGreaterThanOrEqual(3);
    expect(pages.flatMap((p) => p.items.map((i) => i.path))).toEqual(
      [0, 1, 2, 3, 4].map((i) => `pages/s${i}`),
    );
    const meta = await client.history('pages/s0');
    expect(meta).toMatchObject({ path: 'pages/s0', currentVersion: 1 });
    expect(JSON.stringify(meta)).not.toContain('v0');
  });
});

describe('client: timers', () => {
  it('when a plain Node script reads a secret through coffer/client and ends, it exits at once (timers unref()d)', async () => {
    await h.call('PUT', '/v1/secrets/script/x', { body: { value: 'script-value' } });
    // The package's own entry, as a script inside the checkout imports it (no tsx loader).
    const script = `
      import { createClient } from 'coffer/client';
      const c = createClient({ endpoint: process.env.EP, auth: { token: process.env.TK } });
      const s = await c.get('script/x');
      console.log(s.value.length);
    `;
    const started = Date.now();
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: ROOT,
      env: { ...process.env, EP: endpoint, TK: h.token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    // The bound of this test: a child still running then is killed (and the test fails).
    const guard = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const [code] = await once(child, 'exit');
    clearTimeout(guard);
    expect(code).toBe(0);
    expect(out.trim()).toBe('12');
    // The cache's TTL is 5 minutes: a ref'd timer would have held the process that long.
    expect(Date.now() - started).toBeLessThan(20_000);
  });
});
