import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAuthenticator } from '../../lib/authn/build.js';
import { parseConfig } from '../../lib/config-file.js';
import { jsonLogger } from '../../lib/log.js';
import { createHarness, type Harness } from '../support/harness.js';
import { CLI_CLIENT_ID, COFFER_SCOPE, startTestIdp, type TestIdp } from '../support/oidc-idp.js';
import { accessClaims, signToken } from '../support/oidc-tokens.js';

/**
 * End to end with real identity providers: oidc-provider issues JWT access tokens (client
 * credentials and device flow), and the real app over DynamoDB Local verifies them.
 */
describe('OIDC with a real identity provider', () => {
  let corp: TestIdp;
  let partner: TestIdp;
  let h: Harness;
  const authLogs: string[] = [];

  beforeAll(async () => {
    corp = await startTestIdp({
      machineClients: ['svc-a'],
      groups: { 'svc-a': ['eng'], alice: ['admins', 'eng', 'ops'] },
      claims: { alice: { email: 'alice@example.test', dept: 'R&D' } },
    });
    partner = await startTestIdp({
      audience: 'coffer-partner',
      machineClients: ['svc-b', 'svc-c'],
      groups: { 'svc-b': ['admins'], 'svc-c': ['eng'] },
    });
    const config = parseConfig(
      `
issuers:
  - alias: corp
    issuer: ${corp.issuer}
    audiences: [coffer-api]
    requireAtJwt: true
    allowHttpLoopback: true
    claims:
      attributes: { email: email, department: dept, client: client_id }
    groupMapping:
      eng: [engineers]
      ops: [operators, oncall]
  - alias: partner
    issuer: ${partner.issuer}
    audiences: [coffer-partner]
    allowHttpLoopback: true
    groupMapping:
      admins: [admins]
`,
      { source: 'test', env: {} },
    );
    h = await createHarness({
      label: 'oidc',
      authenticator: (dev) =>
        buildAuthenticator({
          config,
          logger: jsonLogger((l) => authLogs.push(l)),
          devIssuerKey: dev.publicKey,
        }),
    });
  });

  afterAll(async () => {
    await corp?.close();
    await partner?.close();
  });

  it('when a machine uses a client-credentials token, it is User::"corp:svc-a" with mapped groups, end to end', async () => {
    const token = await corp.clientCredentialsToken('svc-a');
    expect(decodeJwt(token).aud).toBe('coffer-api');

    const me = await h.call('GET', '/v1/whoami', { token });
    expect(me.status).toBe(200);
    expect(me.body).toEqual({
      type: 'User',
      id: 'corp:svc-a',
      entity: 'Coffer::User::"corp:svc-a"',
      groups: ['engineers'],
      attributes: { client: 'svc-a' },
      authMethod: 'oidc',
      issuer: 'corp',
    });

    const put = await h.call('PUT', '/v1/secrets/oidc/machine/key', { token, body: { value: 'v1' } });
    expect(put.status).toBe(200);
    const got = await h.call('GET', '/v1/secrets/oidc/machine/key', { token });
    expect(got.body.value).toBe('v1');
    const meta = await h.call('GET', '/v1/meta/oidc/machine/key', { token });
    expect(meta.body.versions[0].createdBy).toContain('corp:svc-a');
  });

  it('when a person signs in with the device flow, the token works and carries mapped groups and attributes', async () => {
    const config = await corp.clientConfig(CLI_CLIENT_ID);
    const started = await oidc.initiateDeviceAuthorization(config, {
      scope: `openid offline_access ${COFFER_SCOPE}`,
      resource: corp.resource,
    });
    const polling = oidc.pollDeviceAuthorizationGrant(config, started, { resource: corp.resource });
    await corp.approveDevice(started.user_code, 'alice');
    const tokens = await polling;
    // The IdP says alice is in admins, eng and ops.
    expect(decodeJwt(tokens.access_token).groups).toEqual(['admins', 'eng', 'ops']);

    const me = await h.call('GET', '/v1/whoami', { token: tokens.access_token });
    expect(me.status).toBe(200);
    expect(me.body).toEqual({
      type: 'User',
      id: 'corp:alice',
      entity: 'Coffer::User::"corp:alice"',
      // corp maps eng and ops; nothing maps corp's admins, so alice is no Coffer admin.
      groups: ['engineers', 'oncall', 'operators'],
      attributes: { email: 'alice@example.test', department: 'R&D', client: CLI_CLIENT_ID },
      authMethod: 'oidc',
      issuer: 'corp',
    });
  }, 60_000);

  it('when one issuer claims admins, only the issuer whose mapping says so gives the Coffer group', async () => {
    const fromPartner = await h.call('GET', '/v1/whoami', {
      token: await partner.clientCredentialsToken('svc-b'),
    });
    expect(fromPartner.body).toMatchObject({ id: 'partner:svc-b', groups: ['admins'], issuer: 'partner' });

    // corp's token claiming admins (signed by corp, otherwise valid) gets only what corp maps.
    const claimsAdmins = await signToken(
      { ...corp.signingKey, alg: 'RS256' },
      accessClaims(corp.issuer, 'coffer-api', 'mallory', { groups: ['admins', 'eng'] }),
    );
    const fromCorp = await h.call('GET', '/v1/whoami', { token: claimsAdmins });
    expect(fromCorp.status).toBe(200);
    expect(fromCorp.body).toMatchObject({ id: 'corp:mallory', groups: ['engineers'], attributes: {} });

    // partner does not map eng: no groups at all.
    const unmapped = await h.call('GET', '/v1/whoami', {
      token: await partner.clientCredentialsToken('svc-c'),
    });
    expect(unmapped.body).toMatchObject({ id: 'partner:svc-c', groups: [] });
  });

  it('when the same subject comes from two issuers, they are two principals', async () => {
    const a = await signToken(
      { ...corp.signingKey, alg: 'RS256' },
      accessClaims(corp.issuer, 'coffer-api', 'sam'),
    );
    const b = await signToken(
      { ...partner.signingKey, alg: 'RS256' },
      accessClaims(partner.issuer, 'coffer-partner', 'sam'),
    );
    expect((await h.call('GET', '/v1/whoami', { token: a })).body.id).toBe('corp:sam');
    expect((await h.call('GET', '/v1/whoami', { token: b })).body.id).toBe('partner:sam');
  });

  it('when the issuer requires at+jwt, a token typed JWT (an ID token, say) is refused', async () => {
    const typedJwt = await signToken(
      { ...corp.signingKey, alg: 'RS256' },
      accessClaims(corp.issuer, 'coffer-api', 'alice'),
      { typ: 'JWT' },
    );
    expect((await h.call('GET', '/v1/whoami', { token: typedJwt })).status).toBe(401);
    // partner does not require it.
    const partnerJwt = await signToken(
      { ...partner.signingKey, alg: 'RS256' },
      accessClaims(partner.issuer, 'coffer-partner', 'alice'),
      { typ: 'JWT' },
    );
    expect((await h.call('GET', '/v1/whoami', { token: partnerJwt })).status).toBe(200);
  });

  it('when the dev issuer is trusted too, its tokens still map one to one', async () => {
    const me = await h.call('GET', '/v1/whoami');
    expect(me.body).toEqual({
      type: 'User',
      id: 'dev:dev-admin',
      entity: 'Coffer::User::"dev:dev-admin"',
      groups: ['admins'],
      attributes: {},
      authMethod: 'dev',
      issuer: 'dev',
    });
  });

  it('when discovery and JWKS were fetched once, later tokens need no more requests', async () => {
    const before = corp.countRequests('/jwks');
    for (let i = 0; i < 5; i++) {
      const token = await corp.clientCredentialsToken('svc-a');
      expect((await h.call('GET', '/v1/whoami', { token })).status).toBe(200);
    }
    expect(corp.countRequests('/jwks')).toBe(before);
    expect(corp.countRequests('/.well-known/openid-configuration')).toBeGreaterThanOrEqual(1);
    // Refusals were logged with a reason code and never with a token.
    expect(authLogs.some((l) => l.includes('"reason":"ERR_JWT_CLAIM_VALIDATION_FAILED"'))).toBe(true);
    expect(authLogs.join('\n')).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
  });
});
