import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RequestRecord } from '../../lib/audit/record.js';
import { buildAuthenticator } from '../../lib/authn/build.js';
import type { ClientCertificateInput } from '../../lib/authn/certificate.js';
import { parseConfig } from '../../lib/config-file.js';
import { jsonLogger } from '../../lib/log.js';
import { auditFixture } from '../support/audit-fixtures.js';
import { scanAll } from '../support/dynamo.js';
import { createHarness, type Harness } from '../support/harness.js';
import { CertFactory, opensslAvailable, type TestLeaf } from '../support/openssl-certs.js';

const HAS_OPENSSL = opensslAvailable();
if (!HAS_OPENSSL)
  console.warn('mtls-identity: SKIPPED — the openssl command is missing (.ci/run installs it)');

/**
 * A connection that presented a verified client certificate, through the app's ConnectionInfo (as
 * the TLS listener and the Lambda adapter will fill it): whoami, precedence of bearer tokens, the
 * audit record, and headers that claim a certificate.
 */
describe.skipIf(!HAS_OPENSSL)(
  HAS_OPENSSL
    ? 'a client-certificate caller through the app'
    : 'a client-certificate caller — SKIPPED: openssl is not installed',
  () => {
    let certs: CertFactory;
    let agent: TestLeaf;
    let laptop: TestLeaf;
    let fx: Awaited<ReturnType<typeof auditFixture>>;
    let h: Harness;
    let presented: ClientCertificateInput | undefined;
    const authLogs: string[] = [];

    beforeAll(async () => {
      certs = await CertFactory.create();
      const acme = await certs.ca('acme', '/O=Acme/CN=Acme Issuing CA');
      agent = await certs.leaf(acme, 'agent', {
        subject: '/O=Acme/CN=agent-1',
        sans: ['URI:spiffe://acme.example/ci/agent'],
      });
      laptop = await certs.leaf(acme, 'laptop', {
        subject: '/O=Acme/CN=laptop-42',
        sans: ['DNS:laptop-42.corp.acme.example'],
      });
      const config = parseConfig('mtls: { allowedSans: ["URI:spiffe://acme.example/ci/*"] }', { env: {} });
      fx = await auditFixture('mtls');
      h = await createHarness({
        label: 'mtls',
        audit: fx.trail({ chains: 1 }),
        authenticator: (dev) =>
          buildAuthenticator({
            config,
            logger: jsonLogger((l) => authLogs.push(l)),
            devIssuerKey: dev.publicKey,
          }),
        connection: () => ({ sourceIp: '10.0.0.7', ...(presented ? { clientCertificate: presented } : {}) }),
      });
    }, 120_000);

    afterAll(async () => {
      await certs?.close();
    });

    const tls = (leaf: TestLeaf): ClientCertificateInput => ({
      source: 'tls',
      certificate: new X509Certificate(leaf.pem),
      verified: true,
    });

    it('when a verified certificate comes without a bearer token, whoami shows its workload and tags, and the audit record names the kind and fingerprint', async () => {
      presented = tls(agent);
      const me = await h.call('GET', '/v1/whoami', { token: null });
      expect(me.status).toBe(200);
      const fingerprint = certs.inspect(agent.certPath, ['-fingerprint', '-sha256']).split('=')[1];
      expect(me.body).toMatchObject({
        type: 'Workload',
        id: 'cert:CN=Acme Issuing CA,O=Acme:CN=agent-1,O=Acme',
        entity: 'Coffer::Workload::"cert:CN=Acme Issuing CA,O=Acme:CN=agent-1,O=Acme"',
        kind: 'certificate',
        authMethod: 'mtls',
        issuer: 'CN=Acme Issuing CA,O=Acme',
        attributes: { fingerprint, subjectCN: 'agent-1', sanUri: 'spiffe://acme.example/ci/agent' },
      });
      const records = (await scanAll(fx.client, fx.tables.audit)).filter(
        (i) => i.requestId === me.headers.get('x-request-id'),
      ) as unknown as RequestRecord[];
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({
        principal: { type: 'Workload', id: 'cert:CN=Acme Issuing CA,O=Acme:CN=agent-1,O=Acme' },
        authMethod: 'mtls',
        identity: { kind: 'workload-certificate', issuer: 'CN=Acme Issuing CA,O=Acme', fingerprint },
      });
    });

    it('when a bearer token is sent too, the token decides', async () => {
      presented = tls(agent);
      const me = await h.call('GET', '/v1/whoami');
      expect(me.body).toMatchObject({ type: 'User', id: 'dev:dev-admin', authMethod: 'dev' });
    });

    it('when a certificate has a SAN outside the allowed patterns, it is the one 401', async () => {
      presented = tls(laptop);
      const res = await h.call('GET', '/v1/whoami', { token: null });
      expect(res.status).toBe(401);
      expect(res.body.error).toMatchObject({ code: 'unauthenticated', message: 'authentication required' });
      expect(authLogs.join('\n')).toContain('"reason":"san_not_allowed"');
    });

    it('when no certificate was presented, headers that claim one are ignored', async () => {
      presented = undefined;
      const res = await h.call('GET', '/v1/whoami', {
        token: null,
        headers: {
          'x-client-cert': encodeURIComponent(agent.pem),
          'x-amzn-mtls-clientcert': encodeURIComponent(agent.pem),
          'x-ssl-client-s-dn': 'CN=agent-1,O=Acme',
        },
      });
      expect(res.status).toBe(401);
    });
  },
);
