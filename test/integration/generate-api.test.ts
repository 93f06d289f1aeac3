import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { loadPolicyDir } from '../../lib/authz/policy-set.js';
import { LocalKeyProvider } from '../../lib/keys/local.js';
import type { KeyProvider } from '../../lib/keys/provider.js';
import { jsonLogger } from '../../lib/log.js';
import { createHarness, type Harness } from '../support/harness.js';
import { opensslAvailable } from '../support/openssl-certs.js';

/*
 * `POST /v1/generate/{path}` through the HTTP API, decided by the real Cedar engine over the
 * repository's policies and examples/pki-issuers.cedar: `issue` on a CA secret and `read` on it
 * are apart, the CA's limits hold, the value never comes back, CAS and Idempotency-Key as for PUT.
 */

const REPO_POLICIES = fileURLToPath(new URL('../../policies', import.meta.url));
const run = promisify(execFile);
const OPENSSL = opensslAvailable();
if (!OPENSSL)
  console.warn('SKIPPED: the openssl command is missing; the openssl checks of this file do not run');

let h: Harness;
let dir: string;
/** The path of every version whose data key was unwrapped: who opened the CA's key, and when. */
const unwrapped: string[] = [];

/** The local key provider, noting each data key it unwraps. */
async function countingKeys(dataDir: string): Promise<KeyProvider> {
  const inner = await LocalKeyProvider.open(dataDir);
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'decryptDataKey') {
        return (...args: Parameters<KeyProvider['decryptDataKey']>) => {
          unwrapped.push(String(args[1]['coffer:path']));
          return target.decryptDataKey(...args);
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
const tokens: Record<string, string> = {};
const as = (who: string) => ({ token: tokens[who] as string });

const CA = 'pki/web-ca';
const caBody = {
  type: 'certificate',
  commonName: 'Web CA',
  organization: 'Coffer Tests',
  validityDays: 365,
  ca: true,
  algorithm: 'ecdsa-p256',
  allowedNames: ['*.example.com', 'spiffe://example/web/*'],
  maxValidityDays: 90,
};
const leafBody = (over: Record<string, unknown> = {}) => ({
  type: 'certificate',
  commonName: 'api.example.com',
  sans: { dns: ['api.example.com', 'www.example.com'], uri: ['spiffe://example/web/api'] },
  validityDays: 30,
  issuer: CA,
  ...over,
});

/** Nothing secret in an answer: no PEM private key, no value field. */
function expectNoSecret(body: unknown, text: string): void {
  expect(text).not.toMatch(/PRIVATE KEY/);
  expect(body).not.toHaveProperty('value');
  expect(body).not.toHaveProperty('private_key');
}

beforeAll(async () => {
  const set = await loadPolicyDir(REPO_POLICIES, { extraFiles: ['examples/pki-issuers.cedar'] });
  h = await createHarness({
    label: 'generate',
    keys: countingKeys,
    authorizer: new CedarAuthorizer(set, { logger: jsonLogger(() => {}) }),
  });
  for (const [name, groups] of Object.entries({
    root: ['admins'],
    ivy: ['web-issuers'],
    paul: ['pki-auditors'],
    nobody: [],
  })) {
    tokens[name] = await h.issuer.mint({ subject: name, groups });
  }
  dir = await mkdtemp(join(tmpdir(), 'coffer-gen-api-'));
  const ca = await h.call('POST', `/v1/generate/${CA}`, { ...as('root'), body: caBody });
  expect(ca.status, ca.text).toBe(200);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('POST /v1/generate', () => {
  it('when a password is generated, the answer has the version and policy but not the password, which meets the policy', async () => {
    const res = await h.call('POST', '/v1/generate/app/db/password', {
      ...as('root'),
      body: { type: 'password', length: 40, classes: ['lower', 'digits'], exclude: '0o1l' },
    });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({
      path: 'app/db/password',
      version: 1,
      type: 'password',
      generator: { type: 'password', length: 40, classes: ['lower', 'digits'], exclude: '01lo' },
    });
    expectNoSecret(res.body, res.text);
    const value = (await h.call('GET', '/v1/secrets/app/db/password', as('root'))).body.value as string;
    expect(value).toMatch(/^[a-z2-9]{40}$/);
    expect(value).toMatch(/[a-z]/);
    expect(value).toMatch(/[2-9]/);
    expect(value).not.toMatch(/[01lo]/);
    expect(res.text).not.toContain(value);
    const meta = await h.call('GET', '/v1/meta/app/db/password', as('root'));
    expect(meta.body).toMatchObject({ type: 'password', generator: { length: 40 } });
  });

  it('when a key pair is generated, the answer has the public key and its fingerprint; the value holds both PEMs', async () => {
    const res = await h.call('POST', '/v1/generate/app/signing', {
      ...as('root'),
      body: { type: 'keypair', algorithm: 'ed25519', description: 'signs releases', tags: { team: 'web' } },
    });
    expect(res.status, res.text).toBe(200);
    expectNoSecret(res.body, res.text);
    expect(res.body.publicKey).toMatchObject({
      algorithm: 'ed25519',
      fingerprint: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    const value = JSON.parse((await h.call('GET', '/v1/secrets/app/signing', as('root'))).body.value);
    expect(Object.keys(value).sort()).toEqual(['private_key', 'public_key']);
    expect(value.public_key).toBe(res.body.publicKey.publicKey);
    expect(value.private_key).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    const meta = await h.call('GET', '/v1/meta/app/signing', as('root'));
    expect(meta.body).toMatchObject({
      type: 'keypair',
      description: 'signs releases',
      tags: { team: 'web' },
    });
    expect(JSON.stringify(meta.body)).not.toMatch(/PRIVATE KEY/);
  });

  it('when an issuer issues a leaf from the CA, it gets certificate metadata; openssl verifies the leaf against that CA and not another', async () => {
    const res = await h.call('POST', '/v1/generate/web/certs/api', { ...as('ivy'), body: leafBody() });
    expect(res.status, res.text).toBe(200);
    expectNoSecret(res.body, res.text);
    expect(res.body.certificate).toMatchObject({
      subject: 'CN=api.example.com',
      issuer: 'CN=Web CA, O=Coffer Tests',
      ca: false,
      sans: ['DNS:api.example.com', 'DNS:www.example.com', 'URI:spiffe://example/web/api'],
    });
    const days = (Date.parse(res.body.certificate.notAfter) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThanOrEqual(30);
    // The issuer may read what it wrote: the leaf, its key and the chain.
    const leaf = JSON.parse((await h.call('GET', '/v1/secrets/web/certs/api', as('ivy'))).body.value);
    expect(Object.keys(leaf).sort()).toEqual(['certificate', 'chain', 'private_key']);
    const caCert = JSON.parse((await h.call('GET', `/v1/secrets/${CA}`, as('root'))).body.value).certificate;
    expect(leaf.chain.trim()).toBe(caCert.trim());
    if (!OPENSSL) return;
    // Certificates only on disk (public), for openssl; deleted with the directory after the run.
    await writeFile(join(dir, 'ca.pem'), caCert);
    await writeFile(join(dir, 'leaf.pem'), leaf.certificate);
    const ok = await run('openssl', ['verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'leaf.pem')]);
    expect(ok.stdout).toMatch(/leaf\.pem: OK/);
    const other = await h.call('POST', '/v1/generate/pki/other-ca', {
      ...as('root'),
      body: { ...caBody, commonName: 'Other CA', allowedNames: undefined },
    });
    expect(other.status).toBe(200);
    const otherCert = JSON.parse(
      (await h.call('GET', '/v1/secrets/pki/other-ca', as('root'))).body.value,
    ).certificate;
    await writeFile(join(dir, 'other.pem'), otherCert);
    await expect(
      run('openssl', ['verify', '-CAfile', join(dir, 'other.pem'), join(dir, 'leaf.pem')]),
    ).rejects.toThrow();
  });

  it('when a leaf breaks the CA limits (a name outside its patterns, a validity over its maximum), it is refused and nothing is written', async () => {
    const cases: [Record<string, unknown>, number, string][] = [
      [leafBody({ sans: { dns: ['api.example.com', 'api.evil.net'] } }), 403, 'name_not_allowed'],
      [leafBody({ commonName: 'a.b.example.com', sans: {} }), 403, 'name_not_allowed'],
      [leafBody({ sans: { uri: ['spiffe://example/db/x'] } }), 403, 'name_not_allowed'],
      [leafBody({ validityDays: 91 }), 400, 'validity_too_long'],
    ];
    for (const [i, [body, status, code]] of cases.entries()) {
      const res = await h.call('POST', `/v1/generate/web/certs/refused-${i}`, { ...as('ivy'), body });
      expect(res.status, res.text).toBe(status);
      expect(res.body.error.code).toBe(code);
      const meta = await h.call('GET', `/v1/meta/web/certs/refused-${i}`, as('root'));
      expect(meta.status).toBe(404);
    }
  });

  it('when a CA with limits is asked for a CA certificate, it is 403 ca_not_allowed: the new CA could sign outside them', async () => {
    const res = await h.call('POST', '/v1/generate/web/certs/sub-ca', {
      ...as('ivy'),
      body: leafBody({ commonName: 'sub.example.com', sans: {}, ca: true }),
    });
    expect(res.status, res.text).toBe(403);
    expect(res.body.error.code).toBe('ca_not_allowed');
    expect((await h.call('GET', '/v1/meta/web/certs/sub-ca', as('root'))).status).toBe(404);
  });

  it("opens the CA's key only for a request that may issue, within the CA's limits, and may write the certificate", async () => {
    unwrapped.length = 0;
    const refused: [string, string, Record<string, unknown>][] = [
      ['paul', 'web/certs/p', leafBody()], // read on the CA, no issue
      ['nobody', 'web/certs/n', leafBody()], // nothing at all
      ['ivy', 'web/certs/i1', leafBody({ sans: { dns: ['db.evil.net'] } })], // a name outside the CA's
      ['ivy', 'web/certs/i2', leafBody({ validityDays: 365 })], // longer than the CA's maximum
      ['ivy', 'app/not-ivys', leafBody()], // may issue, but not write there
    ];
    for (const [who, path, body] of refused) {
      const res = await h.call('POST', `/v1/generate/${path}`, { ...as(who), body });
      expect(res.status, `${who} ${path}`).toBeGreaterThanOrEqual(400);
    }
    expect(unwrapped.filter((p) => p === CA)).toEqual([]);
    const ok = await h.call('POST', '/v1/generate/web/certs/opened', { ...as('ivy'), body: leafBody() });
    expect(ok.status).toBe(200);
    expect(unwrapped.filter((p) => p === CA)).toEqual([CA]);
  });

  it('when the caller may read the CA but not issue from it, issuing is 403 and nothing is written', async () => {
    const read = await h.call('GET', `/v1/secrets/${CA}`, as('paul'));
    expect(read.status).toBe(200);
    const res = await h.call('POST', '/v1/generate/web/certs/by-paul', { ...as('paul'), body: leafBody() });
    expect(res.status, res.text).toBe(403);
    expect(res.body.error.code).toBe('forbidden');
    expect((await h.call('GET', '/v1/meta/web/certs/by-paul', as('root'))).status).toBe(404);
  });

  it('when the caller may issue from the CA, it still cannot read it, see its key or list its metadata', async () => {
    const read = await h.call('GET', `/v1/secrets/${CA}`, as('ivy'));
    expect([403, 404]).toContain(read.status);
    expectNoSecret(read.body, read.text);
    const meta = await h.call('GET', `/v1/meta/${CA}`, as('ivy'));
    expect(meta.status).toBe(404);
    const batch = await h.call('POST', '/v1/batch-get', { ...as('ivy'), body: { paths: [CA] } });
    expect(batch.text).not.toMatch(/PRIVATE KEY/);
  });

  it('when the caller may neither issue from nor see the CA, the answer is that of a missing issuer', async () => {
    const hidden = await h.call('POST', '/v1/generate/web/certs/x', { ...as('nobody'), body: leafBody() });
    const ivyMissing = await h.call('POST', '/v1/generate/web/certs/x', {
      ...as('ivy'),
      body: leafBody({ issuer: 'pki/no-such-ca' }),
    });
    const nobodyMissing = await h.call('POST', '/v1/generate/web/certs/x', {
      ...as('nobody'),
      body: leafBody({ issuer: 'pki/no-such-ca' }),
    });
    for (const r of [hidden, ivyMissing, nobodyMissing]) {
      expect(r.status).toBe(404);
      expect(r.body.error.message).toBe('issuer not found');
    }
  });

  it('when the issuer is not a CA (a leaf, a password), it is 400 not_a_ca', async () => {
    for (const issuer of ['web/certs/api', 'app/db/password']) {
      const res = await h.call('POST', '/v1/generate/app/certs/y', {
        ...as('root'),
        body: leafBody({ issuer }),
      });
      expect(res.status, res.text).toBe(400);
      expect(res.body.error.code).toBe('not_a_ca');
    }
  });

  it('when cas is given, it behaves as for PUT: 0 only if absent, n only if latest is n', async () => {
    const first = await h.call('POST', '/v1/generate/app/cas', {
      ...as('root'),
      body: { type: 'password', cas: 0 },
    });
    expect(first.status).toBe(200);
    const again = await h.call('POST', '/v1/generate/app/cas', {
      ...as('root'),
      body: { type: 'password', cas: 0 },
    });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('cas_conflict');
    const next = await h.call('POST', '/v1/generate/app/cas', {
      ...as('root'),
      body: { type: 'password', cas: 1 },
    });
    expect(next.body).toMatchObject({ version: 2 });
  });

  it('when an Idempotency-Key is sent again, the first version is answered and no second one is written; another body with it is refused', async () => {
    const headers = { 'idempotency-key': 'gen-once-1' };
    const body = { type: 'keypair', algorithm: 'ecdsa-p256' };
    const a = await h.call('POST', '/v1/generate/app/idem', { ...as('root'), body, headers });
    const b = await h.call('POST', '/v1/generate/app/idem', { ...as('root'), body, headers });
    expect(a.status).toBe(200);
    expect(b.body).toEqual(a.body);
    const meta = await h.call('GET', '/v1/meta/app/idem', as('root'));
    expect(meta.body.versions).toHaveLength(1);
    const other = await h.call('POST', '/v1/generate/app/idem', {
      ...as('root'),
      body: { type: 'keypair', algorithm: 'ed25519' },
      headers,
    });
    expect(other.status).toBe(400);
    expect(other.body.error.code).toBe('idempotency_key_reused');
  });

  it('when the request is malformed, it is 400 with a stable code, never a 500', async () => {
    const bad: unknown[] = [
      { type: 'uuid' },
      { type: 'password', length: 4 },
      { type: 'password', classes: [] },
      { type: 'password', classes: ['digits'], exclude: '0123456789' },
      { type: 'password', value: 'chosen' },
      { type: 'keypair' },
      { type: 'keypair', algorithm: 'rsa-1024' },
      { type: 'certificate', commonName: 'x', validityDays: 0 },
      { type: 'certificate', commonName: 'x,y', validityDays: 1 },
      { type: 'certificate', commonName: 'x', validityDays: 1, sans: { ip: ['1.2.3'] } },
      { type: 'certificate', commonName: 'x', validityDays: 1, allowedNames: ['*.x'] },
      { type: 'certificate', commonName: 'x', validityDays: 1, issuer: '../ca' },
      { type: 'certificate', commonName: 'x', validityDays: 1, issuer: 'app/bad/self' },
      [],
    ];
    for (const body of bad) {
      const res = await h.call('POST', '/v1/generate/app/bad/self', { ...as('root'), body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toMatch(/^invalid_/);
    }
    const get = await h.call('GET', '/v1/generate/app/x', as('root'));
    expect(get.status).toBe(405);
  });

  it('when a caller may not write the target, it is refused before anything is generated or the CA key read', async () => {
    const res = await h.call('POST', '/v1/generate/app/not-ivys', { ...as('ivy'), body: leafBody() });
    expect(res.status).toBe(403);
  });

  it('never logs a generated value or private key', () => {
    expect(h.logs.join('\n')).not.toMatch(/PRIVATE KEY/);
  });
});
