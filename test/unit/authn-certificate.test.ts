import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CofferAuthenticator } from '../../lib/authn/authenticator.js';
import { AuthRefusal } from '../../lib/authn/bearer.js';
import {
  assertDistinctCaSubjects,
  CertificateIdentity,
  type ClientCertificateInput,
  certificateFacts,
  clientCertFromEvent,
} from '../../lib/authn/certificate.js';
import type { Principal } from '../../lib/authn/principal.js';
import { principalEntity } from '../../lib/authz/entities.js';
import { parseConfig } from '../../lib/config-file.js';
import { ConfigError } from '../../lib/errors.js';
import { jsonLogger } from '../../lib/log.js';
import {
  CertFactory,
  dateStamp,
  opensslAvailable,
  type TestCa,
  type TestLeaf,
} from '../support/openssl-certs.js';

const HAS_OPENSSL = opensslAvailable();
if (!HAS_OPENSSL) {
  console.warn('authn-certificate: SKIPPED — the openssl command is missing (.ci/run installs it)');
}

const tls = (leaf: TestLeaf, verified = true): ClientCertificateInput => ({
  source: 'tls',
  certificate: new X509Certificate(leaf.pem),
  verified,
});

function refusal(identity: CertificateIdentity, input: ClientCertificateInput): AuthRefusal {
  try {
    identity.principal(input);
  } catch (err) {
    expect(err).toBeInstanceOf(AuthRefusal);
    return err as AuthRefusal;
  }
  throw new Error('expected a refusal');
}

describe.skipIf(!HAS_OPENSSL)(
  HAS_OPENSSL
    ? 'client certificates (made by openssl)'
    : 'client certificates — SKIPPED: openssl is not installed',
  () => {
    let certs: CertFactory;
    let acme: TestCa;
    let other: TestCa;
    let agent: TestLeaf;
    let agentFromOther: TestLeaf;
    let noEku: TestLeaf;
    let serverOnly: TestLeaf;
    let expired: TestLeaf;
    let future: TestLeaf;
    let laptop: TestLeaf;
    let noSans: TestLeaf;
    let commaCn: TestLeaf;
    let caAsClient: TestLeaf;

    const identity = new CertificateIdentity();

    beforeAll(async () => {
      certs = await CertFactory.create();
      acme = await certs.ca('acme', '/O=Acme/CN=Acme Issuing CA');
      other = await certs.ca('other', '/O=Other/CN=Other CA');
      const sans = ['URI:spiffe://acme.example/ci/agent', 'DNS:agent-1.agents.acme.example'];
      agent = await certs.leaf(acme, 'agent', { subject: '/O=Acme/CN=agent-1', sans });
      agentFromOther = await certs.leaf(other, 'agent', { subject: '/O=Acme/CN=agent-1', sans });
      noEku = await certs.leaf(acme, 'no-eku', { subject: '/O=Acme/CN=no-eku', eku: null, sans });
      serverOnly = await certs.leaf(acme, 'server', {
        subject: '/O=Acme/CN=server',
        eku: 'serverAuth',
        sans,
      });
      const day = 86400_000;
      expired = await certs.leaf(acme, 'expired', {
        subject: '/O=Acme/CN=expired',
        sans,
        startDate: dateStamp(new Date(Date.now() - 30 * day)),
        endDate: dateStamp(new Date(Date.now() - day)),
      });
      future = await certs.leaf(acme, 'future', {
        subject: '/O=Acme/CN=future',
        sans,
        startDate: dateStamp(new Date(Date.now() + day)),
        endDate: dateStamp(new Date(Date.now() + 30 * day)),
      });
      laptop = await certs.leaf(acme, 'laptop', {
        subject: '/O=Acme/CN=laptop-42',
        sans: ['DNS:laptop-42.corp.acme.example'],
      });
      noSans = await certs.leaf(acme, 'no-sans', { subject: '/O=Acme/CN=no-sans' });
      // A CN that holds what would be a second attribute in a naively printed DN.
      commaCn = await certs.leaf(acme, 'comma', { subject: '/CN=agent-1,O=Acme', sans });
      caAsClient = await certs.leaf(acme, 'sub-ca', { subject: '/O=Acme/CN=sub-ca', sans, ca: true });
    }, 120_000);

    afterAll(async () => {
      await certs?.close();
    });

    it('when a certificate from the CA has clientAuth, it is a workload named by issuer and subject, with SANs, serial and fingerprint as tags', () => {
      const p = identity.principal(tls(agent));
      const fingerprint = certs.inspect(agent.certPath, ['-fingerprint', '-sha256']).split('=')[1] as string;
      const serial = (certs.inspect(agent.certPath, ['-serial']).split('=')[1] as string).replace(/^0+/, '');
      // The credential's issue time (for revocations by age) is the certificate's notBefore.
      const notBefore = Date.parse(certs.inspect(agent.certPath, ['-startdate']).split('=')[1] as string);
      expect(p).toEqual<Principal>({
        type: 'Workload',
        id: 'cert:CN=Acme Issuing CA,O=Acme:CN=agent-1,O=Acme',
        groups: [],
        authMethod: 'mtls',
        kind: 'certificate',
        issuer: 'CN=Acme Issuing CA,O=Acme',
        issuedAt: Math.floor(notBefore / 1000),
        fingerprint,
        attributes: {
          subject: 'CN=agent-1,O=Acme',
          subjectCN: 'agent-1',
          serial,
          fingerprint,
          'san:uri:spiffe://acme.example/ci/agent': 'spiffe://acme.example/ci/agent',
          'san:dns:agent-1.agents.acme.example': 'agent-1.agents.acme.example',
          sanUri: 'spiffe://acme.example/ci/agent',
          sanDns: 'agent-1.agents.acme.example',
        },
      });
      // The DNs are the ones openssl prints in RFC 2253 form.
      expect(certs.inspect(agent.certPath, ['-subject', '-nameopt', 'RFC2253'])).toBe(
        'subject=CN=agent-1,O=Acme',
      );
      expect(certs.inspect(agent.certPath, ['-issuer', '-nameopt', 'RFC2253'])).toBe(
        'issuer=CN=Acme Issuing CA,O=Acme',
      );
      // Cedar accepts it as a Coffer::Workload entity.
      expect(principalEntity(p)).toMatchObject({
        uid: { type: 'Coffer::Workload', id: p.id },
        attrs: { id: p.id, kind: 'certificate', issuer: 'CN=Acme Issuing CA,O=Acme' },
      });
    });

    it('when two CAs issue the same subject, the certificates are two principals', () => {
      const a = identity.principal(tls(agent));
      const b = identity.principal(tls(agentFromOther));
      expect(b.id).toBe('cert:CN=Other CA,O=Other:CN=agent-1,O=Acme');
      expect(a.id).not.toBe(b.id);
      expect(a.attributes.subject).toBe(b.attributes.subject);
    });

    it("when a subject value holds DN syntax, it is escaped and cannot take another certificate's id", () => {
      const p = identity.principal(tls(commaCn));
      expect(p.attributes.subject).toBe('CN=agent-1\\,O=Acme');
      expect(p.id).not.toBe(identity.principal(tls(agent)).id);
    });

    it('when a certificate lacks the clientAuth usage, is a CA, or the TLS layer did not verify it, it is refused', () => {
      expect(refusal(identity, tls(noEku)).reason).toBe('certificate_not_for_client_auth');
      expect(refusal(identity, tls(serverOnly)).reason).toBe('certificate_not_for_client_auth');
      expect(refusal(identity, tls(caAsClient)).reason).toBe('certificate_is_ca');
      expect(refusal(identity, tls(agent, false)).reason).toBe('certificate_not_verified');
      expect(
        refusal(identity, { source: 'tls', certificate: Buffer.from('not a certificate'), verified: true })
          .reason,
      ).toBe('malformed_certificate');
    });

    it('when a certificate is expired or not yet valid, it is refused', () => {
      expect(refusal(identity, tls(expired)).reason).toBe('certificate_expired');
      expect(refusal(identity, tls(future)).reason).toBe('certificate_not_yet_valid');
    });

    it('when allowed SAN patterns are configured, a SAN outside them, or no SAN at all, is refused', () => {
      const config = parseConfig(
        `
mtls:
  allowedSans: ["URI:spiffe://acme.example/ci/*", "DNS:*.AGENTS.acme.example"]
`,
        { env: {} },
      );
      const strict = new CertificateIdentity({ mtls: config.mtls });
      expect(strict.principal(tls(agent)).id).toBe('cert:CN=Acme Issuing CA,O=Acme:CN=agent-1,O=Acme');
      expect(refusal(strict, tls(laptop)).reason).toBe('san_not_allowed');
      expect(refusal(strict, tls(noSans)).reason).toBe('san_not_allowed');
      // Without patterns, any SAN (or none) will do.
      expect(identity.principal(tls(laptop)).attributes.sanDns).toBe('laptop-42.corp.acme.example');
    });

    it("when a serial (in openssl's notation) or a fingerprint is revoked, the certificate is refused; others still pass", () => {
      const serial = certs.inspect(agent.certPath, ['-serial']).split('=')[1] as string;
      const fingerprint = certs.inspect(laptop.certPath, ['-fingerprint', '-sha256']).split('=')[1] as string;
      const config = parseConfig(
        `
mtls:
  revoked:
    - { issuer: "CN=Acme Issuing CA,O=Acme", serial: "${serial.toLowerCase().replace(/(..)(?!$)/g, '$1:')}" }
    - { fingerprint: "${fingerprint.toLowerCase()}" }
`,
        { env: {} },
      );
      const revoking = new CertificateIdentity({ mtls: config.mtls });
      expect(refusal(revoking, tls(agent)).reason).toBe('certificate_revoked');
      expect(refusal(revoking, tls(laptop)).reason).toBe('certificate_revoked');
      // Another CA's certificate for the same subject is not touched by the revocation.
      expect(revoking.principal(tls(agentFromOther)).type).toBe('Workload');
    });

    it("when API Gateway's clientCert context carries the certificate, it maps to the same principal; a mismatched serial or no PEM is refused", () => {
      const serialHex = certs.inspect(agent.certPath, ['-serial']).split('=')[1] as string;
      const event = {
        headers: { 'x-client-cert': 'forged' },
        requestContext: {
          authentication: {
            clientCert: {
              clientCertPem: agent.pem,
              subjectDN: 'CN=agent-1,O=Acme',
              issuerDN: 'CN=Acme Issuing CA,O=Acme',
              serialNumber: serialHex.toLowerCase().replace(/(..)(?!$)/g, '$1:'),
              validity: { notBefore: 'May 28 12:30:02 2019 GMT', notAfter: 'Aug  5 09:36:04 2031 GMT' },
            },
          },
        },
      };
      const clientCert = clientCertFromEvent(event);
      expect(clientCert).toBeDefined();
      const p = identity.principal({
        source: 'api-gateway',
        clientCert: clientCert as NonNullable<typeof clientCert>,
      });
      expect(p).toEqual(identity.principal(tls(agent)));
      expect(
        refusal(identity, {
          source: 'api-gateway',
          clientCert: { ...event.requestContext.authentication.clientCert, serialNumber: '01:02' },
        }).reason,
      ).toBe('certificate_context_mismatch');
      expect(refusal(identity, { source: 'api-gateway', clientCert: { subjectDN: 'CN=admin' } }).reason).toBe(
        'no_client_certificate',
      );
      expect(clientCertFromEvent({ requestContext: {} })).toBeUndefined();
      expect(clientCertFromEvent({ headers: { clientCert: 'x' } } as never)).toBeUndefined();
    });

    it('when the authenticator gets a verified certificate and no Authorization header, the caller is the certificate; a bearer header takes precedence; refusals are the one 401 and logged', async () => {
      const logs: string[] = [];
      const auth = new CofferAuthenticator({
        verifiers: [],
        certificates: identity,
        logger: jsonLogger((l) => logs.push(l)),
      });
      const me = await auth.authenticate({
        authorization: [],
        path: '/v1/whoami',
        clientCertificate: tls(agent),
      });
      expect(me.id).toBe('cert:CN=Acme Issuing CA,O=Acme:CN=agent-1,O=Acme');
      await expect(
        auth.authenticate({
          authorization: [],
          path: '/v1/whoami',
          clientCertificate: tls(expired),
          requestId: 'r-1',
        }),
      ).rejects.toThrow('authentication required');
      expect(logs.join('\n')).toContain('"reason":"certificate_expired"');
      expect(logs.join('\n')).toContain('"method":"mtls"');
      // With a bearer token the token decides (here: an unknown issuer), not the certificate.
      await expect(
        auth.authenticate({
          authorization: ['Bearer a.b.c'],
          path: '/v1/whoami',
          clientCertificate: tls(agent),
        }),
      ).rejects.toThrow('authentication required');
      // Without a certificate mapper, a certificate authenticates nothing.
      await expect(
        new CofferAuthenticator({ verifiers: [] }).authenticate({
          authorization: [],
          path: '/v1/x',
          clientCertificate: tls(agent),
        }),
      ).rejects.toThrow('authentication required');
    });

    it('when a client CA bundle holds two CAs with one name, it is refused; distinct names pass', async () => {
      expect(() => assertDistinctCaSubjects(`${acme.pem}\n${other.pem}`)).not.toThrow();
      const twin = await certs.ca('twin', '/O=Acme/CN=Acme Issuing CA');
      expect(() => assertDistinctCaSubjects(`${acme.pem}\n${twin.pem}`)).toThrow(ConfigError);
      expect(() => assertDistinctCaSubjects('')).toThrow('holds no certificate');
    });

    it('reads SANs, validity and usages from the DER', () => {
      const facts = certificateFacts(agent.pem);
      expect(facts.sans).toEqual([
        { kind: 'uri', value: 'spiffe://acme.example/ci/agent' },
        { kind: 'dns', value: 'agent-1.agents.acme.example' },
      ]);
      expect(facts.extKeyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
      const x509 = new X509Certificate(agent.pem);
      expect(facts.notAfter.getTime()).toBe(new Date(x509.validTo).getTime());
      expect(facts.serial).toBe(x509.serialNumber.replace(/^0+/, ''));
    });
  },
);

describe('the mtls section of COFFER_CONFIG', () => {
  it('when a revocation entry or SAN pattern is malformed, Coffer refuses to start', () => {
    expect(() => parseConfig('mtls: { revoked: [{ serial: "01" }] }', { env: {} })).toThrow(
      'each entry is { issuer, serial } or { fingerprint }',
    );
    expect(() => parseConfig('mtls: { revoked: [{ fingerprint: "AB:CD" }] }', { env: {} })).toThrow(
      'fingerprints are SHA-256',
    );
    expect(() => parseConfig('mtls: { allowedSans: ["spiffe://x"] }', { env: {} })).toThrow(
      'SAN patterns are',
    );
    expect(
      parseConfig('mtls: { revoked: [{ issuer: "CN=A", serial: "00:0a:1B" }] }', { env: {} }).mtls,
    ).toEqual({
      revoked: [{ issuer: 'CN=A', serial: 'A1B' }],
    });
  });
});
