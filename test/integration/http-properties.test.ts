/**
 * Property-based tests of the HTTP API (fast-check): random paths and percent-encodings, tags
 * (prototype-named keys included), bodies (valid and invalid JSON, wrong types, huge, unicode with
 * lone surrogates), query parameters, headers and cursors. The property, for every request:
 *   - no 5xx;
 *   - an error answer has a body `{"error":{"code","message","requestId"}}` whose code is in the
 *     error registry;
 *   - the server stays up (health answers afterwards);
 *   - refused requests change no stored data (seeded secrets are snapshot before and after; only
 *     invalid requests are aimed at them).
 *
 * Runs: `COFFER_PROPERTY_RUNS` (default 150, a few seconds, part of `npm test`); the soak script
 * sets it higher, e.g. `COFFER_PROPERTY_RUNS=5000`. `npm test` runs one fixed seed, so that CI is
 * reproducible; `COFFER_PROPERTY_SEED=<n>` replays a run and `COFFER_PROPERTY_SEED=random` explores
 * (the soak).
 */
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { isErrorCode } from '../../packages/client/src/error-registry.js';
import { createHarness, type Harness } from '../support/harness.js';

const RUNS = Number(process.env.COFFER_PROPERTY_RUNS ?? 150);
const SEED_SETTING = process.env.COFFER_PROPERTY_SEED ?? '20261130';
const SEED = SEED_SETTING === 'random' ? undefined : Number(SEED_SETTING);
const SEEDED = ['seed/db/password', 'seed/api-key', 'seedling'];

let h: Harness;
let validCursor = '';

beforeAll(async () => {
  h = await createHarness({ label: 'props' });
  for (const [i, path] of SEEDED.entries()) {
    const res = await h.call('PUT', `/v1/secrets/${path}`, {
      body: { value: `seeded-${i}`, tags: { env: 'prod', constructor: 'c' }, description: 'd' },
    });
    expect(res.status).toBe(200);
  }
  const page = await h.call('GET', '/v1/list?prefix=seed&limit=1');
  validCursor = page.body.cursor as string;
});

async function snapshot(): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const path of SEEDED) {
    const value = await h.call('GET', `/v1/secrets/${path}`);
    const meta = await h.call('GET', `/v1/meta/${path}`);
    out.push(value.body, meta.body);
  }
  return out;
}

// ---- Arbitraries ---------------------------------------------------------------------------

const PROTO_KEYS = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'prototype'];
const weirdText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom('\ud800', 'a\udfffb', '\u0000', '..', '.', '%2e%2E', '%', '%zz', '%00', '%2F', '\\', '😀'),
);

/** Percent-encodes; a lone surrogate (which encodeURIComponent refuses) becomes its raw UTF-8 bytes. */
const encode = (text: string): string => {
  try {
    return encodeURIComponent(text);
  } catch {
    return '%ED%A0%80';
  }
};

const segment = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/),
  fc.constantFrom(
    '.',
    '..',
    '%2e',
    '%2E%2e',
    '%2F',
    '%5C',
    '%00',
    '%zz',
    '%',
    '%C3%A9',
    '%ED%A0%80',
    'a%20b',
  ),
  weirdText.map(encode),
);
/** A path as it goes into the URL: random segments, sometimes empty, long or many. */
const randomPath = fc.oneof(
  fc.array(segment, { minLength: 0, maxLength: 18 }).map((s) => s.join('/')),
  fc.constantFrom('', '/', '//', 'a//b', `${'x'.repeat(600)}`, 'seed/../seed/api-key', 'seed%2F..%2Fx'),
);

const tags = fc.dictionary(
  fc.oneof(fc.constantFrom(...PROTO_KEYS), fc.string({ maxLength: 20 })),
  weirdText,
  {
    maxKeys: 6,
  },
);
const anyJson = fc.jsonValue({ maxDepth: 3 });
const validish = fc.record(
  {
    value: fc.oneof(weirdText, fc.integer(), fc.constant(null)),
    cas: fc.oneof(fc.integer({ min: -2, max: 5 }), fc.double(), fc.string({ maxLength: 3 })),
    description: fc.oneof(weirdText, fc.integer()),
    tags: fc.oneof(tags, anyJson),
    maxVersions: fc.oneof(fc.integer({ min: -1, max: 1002 }), fc.string({ maxLength: 3 })),
    versions: fc.oneof(fc.array(fc.integer({ min: -1, max: 5 }), { maxLength: 3 }), anyJson),
    paths: fc.oneof(fc.array(fc.oneof(randomPath, fc.constantFrom(...SEEDED)), { maxLength: 25 }), anyJson),
    extra: anyJson,
  },
  { requiredKeys: [] },
);
/** Bodies sent as text: JSON of objects that may or may not fit a route, and things that are not JSON. */
const body = fc.oneof(
  validish.map((b) => JSON.stringify(b)),
  anyJson.map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 60 }),
  fc.constantFrom(
    '',
    '{',
    '{"value":',
    '[]',
    'null',
    '{"value":"\\ud800"}',
    '{"tags":{"__proto__":"x"},"value":"v"}',
  ),
  fc.integer({ min: 129 * 1024, max: 140 * 1024 }).map((n) => JSON.stringify({ value: 'x'.repeat(n) })),
  fc.integer({ min: 65 * 1024, max: 100 * 1024 }).map((n) => JSON.stringify({ value: 'y'.repeat(n) })),
);
/** A body that can never be a valid write: aimed at the seeded secrets, it must change nothing. */
const invalidBody = fc.oneof(
  fc.constantFrom('', '{', 'null', '[]', '{"value":1}', '{"value":"\\ud800"}', '{"value":"v","cas":-1}'),
  fc.constantFrom('{"value":"v","tags":{"__proto__":"x"}}', '{"value":"v","nope":1}', '{"versions":[]}'),
  fc.constantFrom(
    '{"maxVersions":0}',
    '{"description":5}',
    '{"tags":{"bad key":"v"}}',
    '{"value":"v","cas":999}',
  ),
  fc.integer({ min: 129 * 1024, max: 131 * 1024 }).map((n) => JSON.stringify({ value: 'x'.repeat(n) })),
);

const queryValue = fc.oneof(
  weirdText.map(encode),
  fc.constantFrom('0', '-1', '1', '1000', '1001', '99999999999', 'abc', '/', '%2C', ''),
);
const cursor = fc.oneof(
  fc.base64String({ maxLength: 40 }),
  fc.string({ maxLength: 30 }).map(encode),
  fc.constant('CURSOR'),
  fc.nat({ max: 40 }).map((i) => `CURSOR-EDIT-${i}`),
);
const query = fc
  .record(
    {
      prefix: queryValue,
      delimiter: queryValue,
      limit: queryValue,
      cursor,
      version: queryValue,
      recoveryDays: queryValue,
      junk: queryValue,
    },
    { requiredKeys: [] },
  )
  .map((q) =>
    Object.entries(q)
      .map(([k, v]) => {
        if (v === 'CURSOR') return `${k}=${encodeURIComponent(validCursor)}`;
        if (v.startsWith('CURSOR-EDIT-')) {
          const at = Number(v.slice('CURSOR-EDIT-'.length)) % Math.max(1, validCursor.length);
          const flipped = `${validCursor.slice(0, at)}${validCursor[at] === 'A' ? 'B' : 'A'}${validCursor.slice(at + 1)}`;
          return `${k}=${encodeURIComponent(flipped)}`;
        }
        return `${k}=${v}`;
      })
      .join('&'),
  );

const headers = fc.record(
  {
    'content-type': fc.constantFrom(
      'application/json',
      'application/json; charset=utf-8',
      'application/json; charset=latin1',
      'text/plain',
      'application/x-www-form-urlencoded',
      '',
    ),
    'idempotency-key': fc.oneof(fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/), fc.string({ maxLength: 140 })),
    'x-forwarded-for': fc.string({ maxLength: 20 }),
    authorization: fc.constantFrom('ADMIN', 'Bearer ', 'Bearer x.y.z', 'Basic abc', 'ADMIN,ADMIN'),
  },
  { requiredKeys: [] },
);

const decoded = (path: string): string => {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
};

/**
 * Whether a route reaches `secret` once the URL parser has had it: it resolves `..` and `.`
 * segments, `%2e` spellings included, before a request leaves (`seed/../seed/api-key` is
 * `seed/api-key`). A random run once soft-deleted a seeded secret through such a spelling.
 */
const landsOn = (route: string, secret: string): boolean => {
  let pathname: string;
  try {
    pathname = new URL(route, 'http://coffer.test').pathname;
  } catch {
    return false;
  }
  const plain = decoded(pathname).replace(/\/+$/, '');
  return plain === secret || plain.endsWith(`/${secret}`);
};

const METHODS = ['GET', 'PUT', 'PATCH', 'POST', 'DELETE', 'HEAD', 'OPTIONS'] as const;

interface Req {
  method: string;
  route: string;
  body?: string;
  headers: Record<string, string>;
}

/** Any request to anything but the seeded secrets. */
const anyRequest: fc.Arbitrary<Req> = fc
  .record({
    method: fc.constantFrom(...METHODS),
    prefix: fc.constantFrom(
      '/v1/secrets/',
      '/v1/meta/',
      '/v1/restore/',
      '/v1/purge/',
      '/v1/destroy/',
      '/v1/generate/',
      '/iam/v1/secrets/',
      '/v1/',
      '/',
    ),
    path: randomPath,
    route: fc.constantFrom('', 'list', 'batch-get', 'whoami', 'health'),
    query: fc.option(query, { nil: undefined }),
    body: fc.option(body, { nil: undefined }),
    headers,
  })
  .map((r) => ({
    method: r.method,
    route: `${r.prefix === '/v1/' ? `/v1/${r.route}` : `${r.prefix}${r.path}`}${r.query ? `?${r.query}` : ''}`,
    ...(r.body !== undefined && r.method !== 'GET' && r.method !== 'HEAD' ? { body: r.body } : {}),
    headers: r.headers,
  }))
  // Valid requests may land anywhere but on the seeded secrets, in any spelling of their paths.
  .filter((r) => !SEEDED.some((s) => landsOn(r.route, s)));

/** Well-formed writes to fresh paths, with tag keys that name Object.prototype members. */
const wellFormedWrite: fc.Arbitrary<Req> = fc
  .record({
    method: fc.constantFrom('PUT', 'PATCH'),
    path: fc.array(fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,8}$/), { minLength: 2, maxLength: 4 }),
    value: fc.string({ maxLength: 30 }),
    tags: fc.dictionary(
      fc.oneof(
        fc.constantFrom(...PROTO_KEYS.filter((k) => k !== '__proto__')),
        fc.stringMatching(/^[a-z]{1,8}$/),
      ),
      fc.string({ maxLength: 10 }),
      { maxKeys: 5 },
    ),
  })
  .map((r) => ({
    method: r.method,
    route: `${r.method === 'PUT' ? '/v1/secrets/' : '/v1/meta/'}w/${r.path.join('/')}`,
    body: JSON.stringify(r.method === 'PUT' ? { value: r.value, tags: r.tags } : { tags: r.tags }),
    headers: {},
  }));

/** A request aimed at a seeded secret that must be refused. */
const refusedOnSeed: fc.Arbitrary<Req> = fc.oneof(
  fc
    .record({
      method: fc.constantFrom('PUT', 'PATCH', 'POST'),
      path: fc.constantFrom(...SEEDED),
      body: invalidBody,
      headers,
    })
    .map((r) => ({
      method: r.method,
      route: `${r.method === 'PUT' ? '/v1/secrets/' : r.method === 'PATCH' ? '/v1/meta/' : '/v1/destroy/'}${r.path}`,
      body: r.body,
      headers: r.headers,
    })),
  fc
    .record({ path: fc.constantFrom(...SEEDED), days: fc.constantFrom('0', '6', '31', 'x', '-1', '7.5') })
    .map((r) => ({
      method: 'DELETE',
      route: `/v1/secrets/${r.path}?recoveryDays=${r.days}`,
      headers: {},
    })),
  fc.record({ path: fc.constantFrom(...SEEDED) }).map((r) => ({
    method: 'POST',
    route: `/v1/purge/${r.path}`,
    headers: {},
  })),
);

async function send(req: Req) {
  const hdrs: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers)) {
    if (k === 'authorization') continue;
    // Header values must be ByteStrings without CR/LF; a client could not send anything else.
    if (/^[\x20-\x7e]*$/.test(v)) hdrs[k] = v;
  }
  const auth = req.headers.authorization;
  const token = auth === undefined || auth === 'ADMIN' ? h.token : auth === 'ADMIN,ADMIN' ? null : null;
  if (auth !== undefined && auth !== 'ADMIN') {
    hdrs.authorization = auth === 'ADMIN,ADMIN' ? `Bearer ${h.token}, Bearer ${h.token}` : auth;
  }
  return h.call(req.method, req.route, {
    ...(req.body !== undefined ? { body: req.body } : {}),
    token,
    headers: hdrs,
  });
}

function checkAnswer(req: Req, res: Awaited<ReturnType<typeof send>>): void {
  const what = `${req.method} ${req.route.slice(0, 200)}`;
  expect(res.status, what).toBeLessThan(500);
  if (res.status >= 400 && req.method !== 'HEAD') {
    const error = res.body?.error;
    expect(typeof error?.code, `${what}: ${res.text.slice(0, 200)}`).toBe('string');
    expect(isErrorCode(error.code), `${what}: code ${error.code}`).toBe(true);
    expect(typeof error.message, what).toBe('string');
    expect(typeof error.requestId, what).toBe('string');
    expect(res.text, what).not.toMatch(/at .+\.(ts|js):\d+/);
  }
}

describe('the HTTP API under random requests', () => {
  it('when requests are random, no answer is 5xx and every error has a registered code', async () => {
    const before = await snapshot();
    await fc.assert(
      fc.asyncProperty(fc.oneof(anyRequest, wellFormedWrite), async (req) => {
        checkAnswer(req, await send(req));
      }),
      { numRuns: RUNS, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
    expect(await snapshot()).toEqual(before);
    expect((await h.call('GET', '/v1/health')).status).toBe(200);
  }, 600_000);

  it('when invalid requests are aimed at stored secrets, they are refused and change nothing', async () => {
    const before = await snapshot();
    await fc.assert(
      fc.asyncProperty(refusedOnSeed, async (req) => {
        const res = await send(req);
        checkAnswer(req, res);
        expect(res.status, `${req.method} ${req.route}`).toBeGreaterThanOrEqual(400);
      }),
      { numRuns: Math.max(20, Math.floor(RUNS / 3)), ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
    expect(await snapshot()).toEqual(before);
    expect(h.logs.filter((l) => JSON.parse(l).level === 'error')).toEqual([]);
    expect((await h.call('GET', '/v1/health')).status).toBe(200);
  }, 600_000);
});
