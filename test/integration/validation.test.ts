import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await createHarness({ label: 'valid' });
});

function expectCleanError(res: { status: number; body: any; text: string }, status: number, codes: string[]) {
  expect(res.status).toBe(status);
  expect(codes).toContain(res.body?.error?.code);
  expect(typeof res.body.error.message).toBe('string');
  expect(typeof res.body.error.requestId).toBe('string');
  expect(res.text).not.toMatch(/at .+\.(ts|js):\d+/);
}

describe('path rules', () => {
  const bad = [
    '/leading',
    'trailing/',
    'double//slash',
    'space in/name',
    'semi;colon',
    'uni/ключ',
    'a/b?c',
    `${'a/'.repeat(16)}q`,
    'x'.repeat(513),
  ];

  it('when a path breaks the rules, every route answers 400 invalid_path and stores nothing', async () => {
    for (const path of bad) {
      const encoded = path
        .split('/')
        .map((s) => encodeURIComponent(s))
        .join('/');
      const put = await h.call('PUT', `/v1/secrets/${encoded}`, { body: { value: 'x' } });
      expectCleanError(put, 400, ['invalid_path']);
      expectCleanError(await h.call('GET', `/v1/secrets/${encoded}`), 400, ['invalid_path']);
      expectCleanError(await h.call('GET', `/v1/meta/${encoded}`), 400, ['invalid_path']);
      expectCleanError(await h.call('DELETE', `/v1/secrets/${encoded}`), 400, ['invalid_path']);
    }
    const listed = await h.call('GET', '/v1/list');
    expect(listed.body.items).toEqual([]);
  });

  it('when a path has 16 segments and 512 bytes, it is accepted', async () => {
    const sixteen = Array.from({ length: 16 }, (_, i) => `s${i}`).join('/');
    expect((await h.call('PUT', `/v1/secrets/${sixteen}`, { body: { value: 'ok' } })).status).toBe(200);
    const long = `${'y'.repeat(250)}/${'z'.repeat(261)}`;
    expect(Buffer.byteLength(long)).toBe(512);
    expect((await h.call('PUT', `/v1/secrets/${long}`, { body: { value: 'ok' } })).status).toBe(200);
    expect((await h.call('GET', `/v1/secrets/${long}`)).body.value).toBe('ok');
  });

  it('when the path is empty, it answers 4xx, never 500', async () => {
    for (const route of ['/v1/secrets/', '/v1/meta/', '/v1/restore/']) {
      const res = await h.call(route === '/v1/restore/' ? 'POST' : 'GET', route);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
    }
  });
});

describe('bodies and limits', () => {
  it('when a value is exactly 64 KiB it is stored; one byte more is 413 value_too_large', async () => {
    const max = 'v'.repeat(64 * 1024);
    expect((await h.call('PUT', '/v1/secrets/limits/max', { body: { value: max } })).status).toBe(200);
    expect((await h.call('GET', '/v1/secrets/limits/max')).body.value).toBe(max);
    const over = await h.call('PUT', '/v1/secrets/limits/over', { body: { value: `${max}v` } });
    expectCleanError(over, 413, ['value_too_large']);
    // Multi-byte characters count as bytes, not characters.
    const wide = await h.call('PUT', '/v1/secrets/limits/wide', {
      body: { value: 'é'.repeat(32 * 1024 + 1) },
    });
    expectCleanError(wide, 413, ['value_too_large']);
  });

  it('when a body is over 128 KiB, it answers 413 payload_too_large', async () => {
    const res = await h.call('PUT', '/v1/secrets/limits/huge', { body: { value: 'x'.repeat(130 * 1024) } });
    expectCleanError(res, 413, ['payload_too_large']);
  });

  it('when a body is not JSON or has the wrong shape, it answers 400 and stores nothing', async () => {
    const cases: unknown[] = [
      'not json',
      '',
      '[]',
      'null',
      '{"value": 5}',
      '{"value": null}',
      '{}',
      '{"value":"x","cas":-1}',
      '{"value":"x","cas":1.5}',
      '{"value":"x","cas":"1"}',
      '{"value":"x","tags":{"k":5}}',
      '{"value":"x","tags":"a"}',
      '{"value":"x","unknown":true}',
      `{"value":"x","description":"${'d'.repeat(1025)}"}`,
      `{"value":"x","tags":{${Array.from({ length: 51 }, (_, i) => `"k${i}":"v"`).join(',')}}}`,
    ];
    for (const body of cases) {
      const res = await h.call('PUT', '/v1/secrets/shape/x', { body: body as string });
      expect(res.status, String(body)).toBe(400);
      expect(['invalid_request', 'invalid_json']).toContain(res.body.error.code);
    }
    for (const type of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'application/jsonx',
      'application/json-patch+json',
      'application/json; charset=latin1',
    ]) {
      const wrongType = await h.call('PUT', '/v1/secrets/shape/x', {
        body: '{"value":"x"}',
        headers: { 'content-type': type },
      });
      expectCleanError(wrongType, 415, ['unsupported_media_type']);
    }
    expect((await h.call('GET', '/v1/secrets/shape/x')).status).toBe(404);
  });

  it('when the content type is JSON with parameters or another case, the body is accepted', async () => {
    for (const [i, type] of [
      'application/json; charset=utf-8',
      'application/json;charset=UTF-8',
      'Application/JSON',
      'application/json; charset="utf-8"',
    ].entries()) {
      const res = await h.call('PUT', `/v1/secrets/ctype/${i}`, {
        body: '{"value":"ok"}',
        headers: { 'content-type': type },
      });
      expect(res.status, type).toBe(200);
    }
  });

  it('when a value, description or tag is not well-formed Unicode, it answers 400 and stores nothing', async () => {
    for (const body of [
      '{"value":"\\ud800"}',
      '{"value":"a\\udc00b"}',
      '{"value":"\\ude00\\ud83d"}',
      '{"value":"x","description":"\\ud800"}',
      '{"value":"x","tags":{"k":"\\udfff"}}',
    ]) {
      const res = await h.call('PUT', '/v1/secrets/unicode/lone', { body });
      expectCleanError(res, 400, ['invalid_request']);
      expect(res.body.error.message).toMatch(/well-formed Unicode/);
    }
    expect((await h.call('GET', '/v1/secrets/unicode/lone')).status).toBe(404);
    await h.call('PUT', '/v1/secrets/unicode/meta', { body: { value: 'x' } });
    const patch = await h.call('PATCH', '/v1/meta/unicode/meta', { body: '{"description":"\\ud800"}' });
    expectCleanError(patch, 400, ['invalid_request']);
  });

  it('when a tag key is __proto__, it answers 400 instead of dropping the tags', async () => {
    await h.call('PUT', '/v1/secrets/tags/proto', { body: { value: 'x', tags: { env: 'prod' } } });
    for (const [method, route, body] of [
      ['PATCH', '/v1/meta/tags/proto', '{"tags":{"__proto__":"x"}}'],
      ['PUT', '/v1/secrets/tags/proto', '{"value":"y","tags":{"__proto__":"x","env":"dev"}}'],
    ] as const) {
      const res = await h.call(method, route, { body });
      expectCleanError(res, 400, ['invalid_request']);
      expect(res.body.error.message).toContain('__proto__');
    }
    const meta = await h.call('GET', '/v1/meta/tags/proto');
    expect(meta.body.tags).toEqual({ env: 'prod' });
    expect(meta.body.currentVersion).toBe(1);
  });

  it('when a body is not valid UTF-8, it answers 400 invalid_json instead of storing U+FFFD', async () => {
    const res = await h.app.request('/v1/secrets/unicode/bytes', {
      method: 'PUT',
      headers: { authorization: `Bearer ${h.token}`, 'content-type': 'application/json' },
      body: Buffer.concat([Buffer.from('{"value":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_json');
    expect((await h.call('GET', '/v1/secrets/unicode/bytes')).status).toBe(404);
  });

  it('when a value holds emoji, astral characters, NUL and a BOM-less UTF-8 body, it comes back unchanged', async () => {
    const value = '😀 𝄞 \u0000 ünï \u2028 \r\n end';
    expect((await h.call('PUT', '/v1/secrets/unicode/ok', { body: { value } })).status).toBe(200);
    expect((await h.call('GET', '/v1/secrets/unicode/ok')).body.value).toBe(value);
  });

  it('when the version query is malformed, it answers 400', async () => {
    await h.call('PUT', '/v1/secrets/q/v', { body: { value: 'x' } });
    for (const v of ['0', '-1', 'abc', '1.5', '', '99999999999']) {
      expectCleanError(await h.call('GET', `/v1/secrets/q/v?version=${v}`), 400, ['invalid_request']);
    }
  });

  it('when the route or method is unknown, it answers 404 or 405 in the error format', async () => {
    expectCleanError(await h.call('GET', '/v1/nope'), 404, ['not_found']);
    expectCleanError(await h.call('POST', '/v1/secrets/a/b', { body: { value: 'x' } }), 405, [
      'method_not_allowed',
    ]);
  });
});

describe('authentication (foundation: dev issuer)', () => {
  it('when the token is missing or invalid, it answers 401 with one fixed message', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const foreign = await new SignJWT({ groups: ['admins'] })
      .setProtectedHeader({ alg: 'EdDSA' })
      .setIssuer('urn:coffer:dev')
      .setAudience('coffer')
      .setSubject('mallory')
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(privateKey);
    // Signed by the dev issuer's own key, expired an hour ago (beyond any clock skew allowed).
    const devKey = createPrivateKey(readFileSync(join(h.dataDir, 'keys', 'dev-issuer.pem'), 'utf8'));
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ groups: ['admins'] })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: 'dev' })
      .setIssuer('urn:coffer:dev')
      .setAudience('coffer')
      .setSubject('dev-admin')
      .setIssuedAt(now - 7200)
      .setExpirationTime(now - 3600)
      .sign(devKey);
    const variants: (string | null)[] = [
      null,
      'garbage',
      foreign,
      expired,
      `${h.token}x`,
      `${h.token.slice(0, -4)}AAAA`,
    ];
    const bodies = new Set<string>();
    for (const token of variants) {
      const res = await h.call('GET', '/v1/secrets/any/thing', { token });
      expect(res.status).toBe(401);
      expect(res.body.error.code).toBe('unauthenticated');
      bodies.add(res.body.error.message);
    }
    const basic = await h.call('GET', '/v1/whoami', {
      token: null,
      headers: { authorization: 'Basic YTpi' },
    });
    expect(basic.status).toBe(401);
    bodies.add(basic.body.error.message);
    expect(bodies.size).toBe(1);
  });

  it('when health is asked, no token is needed', async () => {
    const res = await h.call('GET', '/v1/health', { token: null });
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('ok');
  });

  it('when readiness is asked, a token is needed, and with one it answers ready', async () => {
    const anonymous = await h.call('GET', '/v1/ready', { token: null });
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error.code).toBe('unauthenticated');
    const res = await h.call('GET', '/v1/ready');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ready' });
    expect(res.headers.get('x-request-id')).toBeTruthy();
  });

  it('every answer, a value or an error of any kind, carries its own request id and no-store', async () => {
    await h.call('PUT', '/v1/secrets/headers/x', { body: { value: 'v' } });
    const answers = [
      await h.call('GET', '/v1/secrets/headers/x'),
      await h.call('GET', '/v1/secrets/headers/missing'),
      await h.call('GET', '/v1/no-such-route'),
      await h.call('PUT', '/v1/secrets/headers/x', { body: { nope: 1 } }),
      await h.call('GET', '/v1/secrets/headers/x', { token: null }),
      await h.call('GET', '/v1/secrets/headers/x', { token: 'not-a-token' }),
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 404, 404, 400, 401, 401]);
    const ids = answers.map((a) => a.headers.get('x-request-id'));
    for (const [i, a] of answers.entries()) {
      expect(a.headers.get('cache-control')).toBe('no-store');
      expect(ids[i]).toMatch(/^[0-9a-f-]{36}$/);
      // An error body names the same request.
      if (a.status >= 400) expect(a.body.error.requestId).toBe(ids[i]);
    }
    expect(new Set(ids).size).toBe(answers.length);
  });

  it('when whoami is asked with a valid token, it names the principal', async () => {
    const res = await h.call('GET', '/v1/whoami');
    expect(res.body).toMatchObject({
      type: 'User',
      id: 'dev:dev-admin',
      groups: ['admins'],
      authMethod: 'dev',
    });
  });
});
