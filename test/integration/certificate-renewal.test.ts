import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { loadPolicyDir } from '../../lib/authz/policy-set.js';
import { jsonLogger } from '../../lib/log.js';
import { createHarness, type Harness } from '../support/harness.js';
import { opensslAvailable } from '../support/openssl-certs.js';

const REPO_POLICIES = fileURLToPath(new URL('../../policies', import.meta.url));
const run = promisify(execFile);
const OPENSSL = opensslAvailable();
if (!OPENSSL)
  console.warn('SKIPPED: the openssl command is missing; the openssl checks of this file do not run');

const DAY = 86_400_000;
let clock = Date.parse('2026-02-01T00:00:00Z');
let h: Harness;
let dir: string;
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
  allowedNames: ['*.example.com'],
  maxValidityDays: 90,
};
const leafBody = {
  type: 'certificate',
  commonName: 'api.example.com',
  sans: { dns: ['api.example.com', 'www.example.com'] },
  validityDays: 30,
  algorithm: 'rsa-3072',
  issuer: CA,
};

/** Members of `cert-ops` manage the certificates under web/certs/ but may not issue from the CA. */
const CERT_OPS = `
@id("cert-ops-manage-web-certs")
permit (
  principal in Coffer::Group::"cert-ops",
  action in [Coffer::Action::"write", Coffer::Action::"readMetadata", Coffer::Action::"writeMetadata"],
  resource in Coffer::Folder::"web/certs/"
);
@id("cert-ops-see-pki")
permit (
  principal in Coffer::Group::"cert-ops",
  action == Coffer::Action::"readMetadata",
  resource in Coffer::Folder::"pki/"
);
`;

const meta = async (path: string) => (await h.call('GET', `/v1/meta/${path}`, as('root'))).body;
const value = async (path: string, query = '') =>
  JSON.parse((await h.call('GET', `/v1/secrets/${path}${query}`, as('root'))).body.value) as {
    certificate: string;
    chain: string;
  };

/** openssl's verdict on a leaf against a CA, at the test clock's time. */
async function opensslVerify(caPem: string, leafPem: string): Promise<string> {
  await writeFile(join(dir, 'ca.pem'), caPem);
  await writeFile(join(dir, 'leaf.pem'), leafPem);
  const attime = String(Math.floor(clock / 1000));
  const out = await run('openssl', [
    'verify',
    '-attime',
    attime,
    '-CAfile',
    join(dir, 'ca.pem'),
    join(dir, 'leaf.pem'),
  ]);
  return out.stdout;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coffer-renewal-'));
  const policies = join(dir, 'policies');
  await cp(REPO_POLICIES, policies, { recursive: true });
  await writeFile(join(policies, 'cert-ops.cedar'), CERT_OPS);
  const set = await loadPolicyDir(policies, { extraFiles: ['examples/pki-issuers.cedar'] });
  h = await createHarness({
    label: 'renewal',
    now: () => new Date(clock),
    authorizer: new CedarAuthorizer(set, { logger: jsonLogger(() => {}) }),
  });
  for (const [name, groups] of Object.entries({
    root: ['admins'],
    ivy: ['web-issuers'],
    paul: ['pki-auditors'],
    olga: ['cert-ops'],
  })) {
    tokens[name] = await h.issuer.mint({ subject: name, groups });
  }
  const ca = await h.call('POST', `/v1/generate/${CA}`, { ...as('root'), body: caBody });
  expect(ca.status, ca.text).toBe(200);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('renewal of a certificate before it expires', () => {
  it('when a certificate has a rotation policy, it is due renewBefore ahead of its notAfter if that comes first', async () => {
    const gen = await h.call('POST', '/v1/generate/self/certs/a', {
      ...as('root'),
      body: { type: 'certificate', commonName: 'a.example.com', validityDays: 90 },
    });
    expect(gen.status, gen.text).toBe(200);
    const notAfter = Date.parse(gen.body.certificate.notAfter);
    const set = await h.call('PUT', '/v1/rotation/self/certs/a', { ...as('root'), body: { every: '365d' } });
    expect(set.status, set.text).toBe(200);
    // Default lead time: 30 days.
    expect(set.body.rotation.nextAt).toBe(new Date(notAfter - 30 * DAY).toISOString());
    const own = await h.call('PUT', '/v1/rotation/self/certs/a', {
      ...as('root'),
      body: { every: '365d', renewBefore: '10d' },
    });
    expect(own.body.rotation).toMatchObject({
      renewBefore: '10d',
      nextAt: new Date(notAfter - 10 * DAY).toISOString(),
    });
    // Sooner by `every`: the interval wins.
    const often = await h.call('PUT', '/v1/rotation/self/certs/a', { ...as('root'), body: { every: '7d' } });
    expect(often.body.rotation.nextAt).toBe(new Date(clock + 7 * DAY).toISOString());
    expect(often.body.rotation.renewBefore).toBeUndefined();
  });

  it('when renewBefore is not for a certificate, is shorter than 1h or not shorter than the validity, it is 400', async () => {
    await h.call('POST', '/v1/generate/self/pw', { ...as('root'), body: { type: 'password', length: 20 } });
    for (const [path, renewBefore] of [
      ['self/pw', '10d'],
      ['self/certs/a', '30m'],
      ['self/certs/a', '90d'],
      ['self/certs/a', 'soon'],
    ] as const) {
      const res = await h.call('PUT', `/v1/rotation/${path}`, {
        ...as('root'),
        body: { every: '365d', renewBefore },
      });
      expect(res.status, `${path} ${renewBefore}`).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
  });

  it('when a short-lived certificate has the default lead time, it is renewed at half its validity', async () => {
    const gen = await h.call('POST', '/v1/generate/self/certs/short', {
      ...as('root'),
      body: { type: 'certificate', commonName: 'short.example.com', validityDays: 10 },
    });
    const set = await h.call('PUT', '/v1/rotation/self/certs/short', {
      ...as('root'),
      body: { every: '365d' },
    });
    const { notBefore, notAfter } = gen.body.certificate;
    // Half of its validity (which starts 5 minutes back, for clock skew).
    const half = (Date.parse(notAfter) - Date.parse(notBefore)) / 2;
    expect(half).toBeGreaterThanOrEqual(5 * DAY);
    expect(set.body.rotation.nextAt).toBe(new Date(Date.parse(notAfter) - half).toISOString());
  });

  it('when the scheduled job runs close to notAfter, it renews the certificate with the same subject, names and validity', async () => {
    const gen = await h.call('POST', '/v1/generate/self/certs/b', {
      ...as('root'),
      body: {
        type: 'certificate',
        commonName: 'b.example.com',
        sans: { dns: ['b.example.com'] },
        validityDays: 60,
        algorithm: 'ed25519',
      },
    });
    expect(gen.status, gen.text).toBe(200);
    await h.call('PUT', '/v1/rotation/self/certs/b', {
      ...as('root'),
      body: { every: '365d', renewBefore: '14d' },
    });
    const before = await meta('self/certs/b');
    clock += 45 * DAY;
    expect((await h.service.rotateDue()).failed).toBe(0);
    expect((await meta('self/certs/b')).currentVersion).toBe(1);
    clock += 2 * DAY;
    const result = await h.service.rotateDue();
    expect(result.failed).toBe(0);
    const after = await meta('self/certs/b');
    expect(after.currentVersion).toBe(2);
    expect(after.certificate).toMatchObject({
      subject: before.certificate.subject,
      sans: before.certificate.sans,
      notBefore: new Date(clock - 5 * 60_000).toISOString(),
    });
    expect(after.certificate.serial).not.toBe(before.certificate.serial);
    expect(Date.parse(after.certificate.notAfter) - clock).toBe(60 * DAY);
    expect(after.rotation.nextAt).toBe(
      new Date(Date.parse(after.certificate.notAfter) - 14 * DAY).toISOString(),
    );
    // No longer expiring within 14 days.
    const expiring = await h.call('GET', '/v1/lifecycle/expiring?prefix=self/certs/b&within=14d', as('root'));
    expect(expiring.body.items).toEqual([]);
  });
});

describe('renewal of a certificate issued by a CA secret', () => {
  const LEAF = 'web/certs/api';
  let caPem: string;

  beforeAll(async () => {
    const leaf = await h.call('POST', `/v1/generate/${LEAF}`, { ...as('ivy'), body: leafBody });
    expect(leaf.status, leaf.text).toBe(200);
    caPem = (await value(CA)).certificate;
  });

  it('when a caller without issue on the CA sets a rotation policy or rotates, it is 403; with issue it renews from the same CA', async () => {
    const set = await h.call('PUT', `/v1/rotation/${LEAF}`, { ...as('olga'), body: { every: '365d' } });
    expect(set.status, set.text).toBe(403);
    const rotate = await h.call('POST', `/v1/rotate/${LEAF}`, as('paul'));
    expect(rotate.status, rotate.text).toBe(403);
    expect((await meta(LEAF)).currentVersion).toBe(1);
    const before = await meta(LEAF);
    const ok = await h.call('POST', `/v1/rotate/${LEAF}`, as('ivy'));
    expect(ok.status, ok.text).toBe(202);
    expect(ok.text).not.toMatch(/PRIVATE KEY/);
    const after = await meta(LEAF);
    expect(after.currentVersion).toBe(2);
    expect(after.certificate).toMatchObject({
      subject: before.certificate.subject,
      issuer: before.certificate.issuer,
      sans: before.certificate.sans,
    });
    const renewed = await value(LEAF);
    expect(renewed.chain.trim()).toBe(caPem.trim());
    if (OPENSSL) expect(await opensslVerify(caPem, renewed.certificate)).toMatch(/leaf\.pem: OK/);
  });

  it('when the scheduled job reaches a CA-issued certificate near its notAfter, it re-issues it from the CA; openssl verifies it against that CA only', async () => {
    const set = await h.call('PUT', `/v1/rotation/${LEAF}`, {
      ...as('root'),
      body: { every: '365d', renewBefore: '7d' },
    });
    expect(set.status, set.text).toBe(200);
    const notAfter = Date.parse((await meta(LEAF)).certificate.notAfter);
    const version = (await meta(LEAF)).currentVersion;
    clock = notAfter - 6 * DAY;
    expect(await h.service.rotateDue()).toMatchObject({ failed: 0 });
    const after = await meta(LEAF);
    expect(after.currentVersion).toBe(version + 1);
    expect(after.certificate.notBefore).toBe(new Date(clock - 5 * 60_000).toISOString());
    expect(after.rotation.lastRotationError).toBeUndefined();
    const renewed = await value(LEAF);
    if (!OPENSSL) return;
    expect(await opensslVerify(caPem, renewed.certificate)).toMatch(/leaf\.pem: OK/);
    const other = await h.call('POST', '/v1/generate/pki/other-ca', {
      ...as('root'),
      body: { ...caBody, commonName: 'Other CA' },
    });
    expect(other.status, other.text).toBe(200);
    await expect(
      opensslVerify((await value('pki/other-ca')).certificate, renewed.certificate),
    ).rejects.toThrow();
  });

  it('when the CA no longer allows the leaf (its names, its maximum validity), the renewal is refused, current stays and lastRotationError says why', async () => {
    const start = await meta(LEAF);
    // The CA is re-made with narrower limits: the leaf's names are outside them now.
    const narrower = await h.call('POST', `/v1/generate/${CA}`, {
      ...as('root'),
      body: { ...caBody, allowedNames: ['*.other.org'] },
    });
    expect(narrower.status, narrower.text).toBe(200);
    clock = Date.parse(start.rotation.nextAt) + 1000;
    const run1 = await h.service.rotateDue();
    expect(run1.failed).toBe(1);
    let m = await meta(LEAF);
    expect(m.currentVersion).toBe(start.currentVersion);
    expect(m.certificate.serial).toBe(start.certificate.serial);
    expect(m.rotation.lastRotationError).toEqual({
      message: 'rotation failed: name_not_allowed',
      at: new Date(clock).toISOString(),
    });
    const overdue = await h.call('GET', '/v1/lifecycle/rotation-overdue?prefix=web/', as('root'));
    expect(overdue.body.items).toEqual([
      expect.objectContaining({ path: LEAF, lastRotationError: m.rotation.lastRotationError }),
    ]);
    // Names allowed again, but a maximum validity under the leaf's 30 days.
    await h.call('POST', `/v1/generate/${CA}`, { ...as('root'), body: { ...caBody, maxValidityDays: 20 } });
    clock += 60_000;
    expect((await h.service.rotateDue()).failed).toBe(1);
    m = await meta(LEAF);
    expect(m.currentVersion).toBe(start.currentVersion);
    expect(m.rotation.lastRotationError.message).toBe('rotation failed: validity_too_long');
    // A manual rotation by someone who may issue is refused the same way.
    const manual = await h.call('POST', `/v1/rotate/${LEAF}`, as('ivy'));
    expect(manual.status).toBe(400);
    expect(manual.body.error.code).toBe('validity_too_long');
    // The CA as it was: the next run renews, from the new CA key.
    await h.call('POST', `/v1/generate/${CA}`, { ...as('root'), body: caBody });
    clock += 60_000;
    expect((await h.service.rotateDue()).failed).toBe(0);
    m = await meta(LEAF);
    expect(m.currentVersion).toBe(start.currentVersion + 1);
    if (OPENSSL)
      expect(await opensslVerify((await value(CA)).certificate, (await value(LEAF)).certificate)).toMatch(
        /OK/,
      );
  });
});
