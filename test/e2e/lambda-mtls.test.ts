import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KMSClient } from '@aws-sdk/client-kms';
import type { APIGatewayProxyEventV2, Context as LambdaContext } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionFromEvent, createApiApp, lambdaHandler } from '../../functions/api-app.js';
import { ENV, type LambdaSettings, lambdaSettings } from '../../functions/env.js';
import { MTLS_API_ID_ENV } from '../../infra/constructs/mtls-api.js';
import { parseConfig } from '../../lib/config-file.js';
import { jsonLogger } from '../../lib/log.js';
import {
  ACCOUNT,
  AUDIT_KEY_ARN,
  DATA_KEY_ARN,
  fakeKms,
  HMAC_KEY_ARN,
  REGION,
} from '../infra/support/fake-kms.js';
import { freshTables } from '../support/dynamo.js';
import { CertFactory, opensslAvailable, type TestCa, type TestLeaf } from '../support/openssl-certs.js';

/*
 * The API function behind both HTTP APIs, driven with complete API Gateway v2 events: on the
 * mutual-TLS API (its id in COFFER_MTLS_API_ID) the caller is the certificate API Gateway put in
 * `requestContext.authentication.clientCert` and nothing else; on the regular API that context is
 * never read. Certificates are made by openssl at test time.
 */

const HAS_OPENSSL = opensslAvailable();
if (!HAS_OPENSSL) console.warn('lambda-mtls: SKIPPED — the openssl command is missing (.ci/run installs it)');

const ISSUER = 'https://idp.example.com/';
const JWKS_URI = 'https://idp.example.com/jwks';
const API_ID = 'a1b2c3d4e5';
const MTLS_API_ID = 'm9n8b7v6c5';
const MTLS_DOMAIN = 'coffer-mtls.example.com';

let counter = 0;

/** `ANY /v1/{proxy+}` on the given API: the domain, request context and headers API Gateway sets. */
function event(
  apiId: string,
  rawPath: string,
  options: { headers?: Record<string, string>; clientCert?: Record<string, unknown> } = {},
): APIGatewayProxyEventV2 {
  counter++;
  const domainName = apiId === MTLS_API_ID ? MTLS_DOMAIN : `${apiId}.execute-api.${REGION}.amazonaws.com`;
  return {
    version: '2.0',
    routeKey: 'ANY /v1/{proxy+}',
    rawPath,
    rawQueryString: '',
    headers: {
      accept: 'application/json',
      host: domainName,
      'user-agent': 'curl/8.5.0',
      'x-amzn-trace-id': 'Root=1-6740f0de-0123456789abcdef01234567',
      'x-forwarded-for': '198.51.100.23',
      'x-forwarded-port': '443',
      'x-forwarded-proto': 'https',
      ...options.headers,
    },
    pathParameters: { proxy: rawPath.slice('/v1/'.length) },
    isBase64Encoded: false,
    requestContext: {
      accountId: ACCOUNT,
      apiId,
      domainName,
      domainPrefix: domainName.split('.')[0] as string,
      http: {
        method: 'GET',
        path: rawPath,
        protocol: 'HTTP/1.1',
        sourceIp: '198.51.100.23',
        userAgent: 'curl/8.5.0',
      },
      requestId: `gw-${counter}`,
      routeKey: 'ANY /v1/{proxy+}',
      stage: '$default',
      time: '30/Nov/2026:09:03:58 +0000',
      timeEpoch: 1_795_942_038_000,
      ...(options.clientCert ? { authentication: { clientCert: options.clientCert } } : {}),
    } as APIGatewayProxyEventV2['requestContext'],
  };
}

/** `requestContext.authentication.clientCert` as API Gateway writes it for a verified certificate. */
function clientCertContext(certs: CertFactory, leaf: TestLeaf): Record<string, unknown> {
  const field = (args: string[]) => certs.inspect(leaf.certPath, args).replace(/^[^=]*=/, '');
  return {
    clientCertPem: leaf.pem,
    subjectDN: field(['-subject', '-nameopt', 'RFC2253']),
    issuerDN: field(['-issuer', '-nameopt', 'RFC2253']),
    serialNumber: (field(['-serial']).match(/../g) as string[]).join(':'),
    validity: { notBefore: field(['-startdate']), notAfter: field(['-enddate']) },
  };
}

describe.skipIf(!HAS_OPENSSL)(
  HAS_OPENSSL
    ? 'the API function behind the mutual-TLS API and the regular one'
    : 'the API function behind the mutual-TLS API — SKIPPED: openssl is not installed',
  () => {
    const kms = mockClient(KMSClient);
    let certs: CertFactory;
    let acme: TestCa;
    let agent: TestLeaf;
    let policyDir: string;
    let signingKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
    let jwks: { keys: JWK[] };
    let handler: ReturnType<typeof lambdaHandler>;
    const logs: string[] = [];
    const audit: string[] = [];

    const invoke = async (e: APIGatewayProxyEventV2) => {
      const out = await handler(e, { awsRequestId: `lambda-${counter}` } as LambdaContext);
      return { status: out.statusCode, body: JSON.parse(out.body as string) as Record<string, unknown> };
    };
    const token = () =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
        .setIssuer(ISSUER)
        .setAudience('coffer')
        .setSubject('alice')
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(signingKey);

    beforeAll(async () => {
      certs = await CertFactory.create();
      acme = await certs.ca('acme', '/O=Acme/CN=Acme Issuing CA');
      agent = await certs.leaf(acme, 'agent', {
        subject: '/O=Acme/CN=agent-1',
        sans: ['URI:spiffe://acme.example/ci/agent'],
      });
      const { client, tables } = await freshTables('lambdamtls');
      fakeKms(kms);
      const pair = await generateKeyPair('ES256');
      signingKey = pair.privateKey;
      jwks = { keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' }] };
      policyDir = await mkdtemp(join(tmpdir(), 'coffer-lambda-mtls-policies-'));
      for (const file of ['schema.cedarschema', 'admins.cedar']) {
        await copyFile(join('policies', file), join(policyDir, file));
      }
      const settings: LambdaSettings = {
        tables,
        secretsKeyArn: DATA_KEY_ARN,
        previousSecretsKeyArns: [],
        auditKeyArn: AUDIT_KEY_ARN,
        fieldHmacKeyArn: HMAC_KEY_ARN,
        mtlsApiId: MTLS_API_ID,
        config: parseConfig(
          JSON.stringify({
            issuers: [
              {
                alias: 'corp',
                issuer: ISSUER,
                audiences: ['coffer'],
                algorithms: ['ES256'],
                jwksUri: JWKS_URI,
              },
            ],
            mtls: { allowedSans: ['URI:spiffe://acme.example/*'] },
          }),
          { source: 'test', format: 'json', env: {} },
        ),
      };
      const fakeFetch: typeof fetch = async (input) =>
        String(input instanceof Request ? input.url : input) === JWKS_URI
          ? new Response(JSON.stringify(jwks), { headers: { 'content-type': 'application/json' } })
          : new Response('not found', { status: 404 });
      const logger = jsonLogger((l) => logs.push(l));
      handler = lambdaHandler(
        () =>
          createApiApp({
            settings,
            policyDir,
            clients: { dynamo: client, kms: new KMSClient({ region: REGION }) },
            logger,
            auditSink: (l) => audit.push(l),
            fetch: fakeFetch,
          }),
        logger,
      );
    }, 120_000);

    afterAll(async () => {
      kms.reset();
      await certs?.close();
      if (policyDir) await rm(policyDir, { recursive: true, force: true });
    });

    it(`reads the mutual-TLS API's id from ${MTLS_API_ID_ENV}, the variable the stack sets`, () => {
      expect(ENV.mtlsApiId).toBe(MTLS_API_ID_ENV);
      const base = {
        [ENV.secretsTable]: 's',
        [ENV.auditTable]: 'a',
        [ENV.secretsKeyArn]: DATA_KEY_ARN,
        [ENV.auditKeyArn]: AUDIT_KEY_ARN,
      };
      expect(lambdaSettings({ ...base, [MTLS_API_ID_ENV]: MTLS_API_ID }).mtlsApiId).toBe(MTLS_API_ID);
      expect(lambdaSettings(base).mtlsApiId).toBeUndefined();
    });

    it('when an event of the mutual-TLS API carries a verified clientCert, whoami shows the certificate workload and its tags', async () => {
      const fingerprint = certs.inspect(agent.certPath, ['-fingerprint', '-sha256']).split('=')[1] as string;
      const me = await invoke(
        event(MTLS_API_ID, '/v1/whoami', { clientCert: clientCertContext(certs, agent) }),
      );
      expect(me.status).toBe(200);
      expect(me.body).toMatchObject({
        type: 'Workload',
        id: 'cert:CN=Acme Issuing CA,O=Acme:CN=agent-1,O=Acme',
        authMethod: 'mtls',
        kind: 'certificate',
        issuer: 'CN=Acme Issuing CA,O=Acme',
        attributes: {
          subject: 'CN=agent-1,O=Acme',
          subjectCN: 'agent-1',
          fingerprint,
          sanUri: 'spiffe://acme.example/ci/agent',
        },
      });
      const record = audit
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .findLast((r) => r.type === 'request' && r.authMethod === 'mtls');
      expect(record).toMatchObject({
        identityKind: 'workload-certificate',
        fingerprint,
        principalType: 'Workload',
      });
    });

    it('when an event of the mutual-TLS API has no clientCert, it is 401 — a bearer token or a certificate header does not stand in', async () => {
      const bare = await invoke(event(MTLS_API_ID, '/v1/whoami'));
      expect(bare.status).toBe(401);
      expect(bare.body.error).toMatchObject({ code: 'unauthenticated', message: 'authentication required' });
      const withToken = await invoke(
        event(MTLS_API_ID, '/v1/whoami', { headers: { authorization: `Bearer ${await token()}` } }),
      );
      expect(withToken.status).toBe(401);
      const withHeader = await invoke(
        event(MTLS_API_ID, '/v1/whoami', {
          headers: {
            'x-client-cert': encodeURIComponent(agent.pem),
            'x-amzn-mtls-clientcert': encodeURIComponent(agent.pem),
          },
        }),
      );
      expect(withHeader.status).toBe(401);
    });

    it('when an event of the regular API carries a clientCert context, it is ignored: bearer rules apply', async () => {
      const clientCert = clientCertContext(certs, agent);
      const certOnly = await invoke(event(API_ID, '/v1/whoami', { clientCert }));
      expect(certOnly.status).toBe(401);
      const withToken = await invoke(
        event(API_ID, '/v1/whoami', { clientCert, headers: { authorization: `Bearer ${await token()}` } }),
      );
      expect(withToken.status).toBe(200);
      expect(withToken.body).toMatchObject({ type: 'User', id: 'corp:alice', authMethod: 'oidc' });
      expect(
        connectionFromEvent(event(API_ID, '/v1/whoami', { clientCert }), MTLS_API_ID),
      ).not.toHaveProperty('clientCertificate');
      // Without COFFER_MTLS_API_ID (mTLS off), no event's certificate context is read.
      expect(
        connectionFromEvent(event(MTLS_API_ID, '/v1/whoami', { clientCert }), undefined),
      ).not.toHaveProperty('clientCertificate');
    });

    it('when a certificate header arrives on the regular API, it authenticates nothing', async () => {
      const res = await invoke(
        event(API_ID, '/v1/whoami', {
          headers: {
            'x-client-cert': encodeURIComponent(agent.pem),
            'x-ssl-client-cert': encodeURIComponent(agent.pem),
          },
        }),
      );
      expect(res.status).toBe(401);
    });
  },
);
