import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildAuthenticator } from '../../lib/authn/build.js';
import { parseConfig } from '../../lib/config-file.js';
import { jsonLogger } from '../../lib/log.js';
import { createHarness, type Harness } from '../support/harness.js';
import { startTestIdp, type TestIdp } from '../support/oidc-idp.js';
import { accessClaims, type StaticIssuer, signToken, startStaticIssuer } from '../support/oidc-tokens.js';

const HOUR = 3_600_000;

/** Claims that outlive the simulated outage, so that only the key set's age decides. */
const longLived = (issuer: string, audience: string, sub: string) => ({
  ...accessClaims(issuer, audience, sub),
  exp: Math.floor(Date.now() / 1000) + 3 * 86_400,
});

/** A harness trusting one issuer, with the given extra YAML for it. */
async function harnessFor(issuer: string, audience: string, extra: string, logs: string[]): Promise<Harness> {
  const config = parseConfig(
    `issuers:\n  - { alias: corp, issuer: "${issuer}", audiences: [${audience}], allowHttpLoopback: true${extra} }\n`,
    { source: 'test', env: {} },
  );
  return createHarness({
    label: 'outage',
    authenticator: (dev) =>
      buildAuthenticator({ config, logger: jsonLogger((l) => logs.push(l)), devIssuerKey: dev.publicKey }),
  });
}

afterEach(() => {
  vi.useRealTimers();
});

describe('an identity provider outage', () => {
  let idp: TestIdp;
  let h: Harness;
  const logs: string[] = [];
  beforeAll(async () => {
    idp = await startTestIdp({ machineClients: ['svc-a'] });
    h = await harnessFor(idp.issuer, idp.audience, ', jwksMaxStaleSeconds: 7200', logs);
  });
  afterAll(async () => {
    await idp?.close();
  });

  it('when the IdP is unreachable, tokens of its last key set verify up to jwksMaxStaleSeconds, then the answer is 503 identity_provider_unavailable', async () => {
    // The IdP's own token first (discovery and the JWKS fetch), then one signed by its key that
    // outlives the simulated outage.
    expect(
      (await h.call('GET', '/v1/whoami', { token: await idp.clientCredentialsToken('svc-a') })).status,
    ).toBe(200);
    const token = await signToken(
      { privateJwk: idp.signingKey.privateJwk, kid: idp.signingKey.kid, alg: 'RS256' },
      longLived(idp.issuer, idp.audience, 'svc-a'),
    );
    expect((await h.call('GET', '/v1/whoami', { token })).status).toBe(200);
    await idp.close();

    // Only Date is faked: jose's cache age, token expiry and the staleness all read it.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + HOUR });
    const within = await h.call('GET', '/v1/whoami', { token });
    expect(within.status).toBe(200);
    expect(within.body.id).toBe('corp:svc-a');

    vi.setSystemTime(Date.now() + 2 * HOUR);
    const beyond = await h.call('GET', '/v1/whoami', { token });
    expect(beyond.status).toBe(503);
    expect(beyond.body.error).toMatchObject({
      code: 'identity_provider_unavailable',
      message: 'identity provider unavailable; the token cannot be verified now',
    });
    expect(logs.join('\n')).toContain('identity provider unreachable');
    expect(logs.join('\n')).not.toContain(token);
  });

  it('when an instance starts during an outage, it cannot verify tokens until the IdP answers (503), and a token of an unknown issuer stays 401', async () => {
    const fresh = await harnessFor(idp.issuer, idp.audience, '', []);
    const token = await signToken(
      { privateJwk: idp.signingKey.privateJwk, kid: idp.signingKey.kid, alg: 'RS256' },
      accessClaims(idp.issuer, idp.audience, 'svc-a'),
    );
    const res = await fresh.call('GET', '/v1/whoami', { token });
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe('identity_provider_unavailable');
    const stranger = await signToken(
      { privateJwk: idp.signingKey.privateJwk, kid: idp.signingKey.kid, alg: 'RS256' },
      accessClaims('https://elsewhere.example', idp.audience, 'svc-a'),
    );
    const refused = await fresh.call('GET', '/v1/whoami', { token: stranger });
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('unauthenticated');
  });
});

describe('a key the IdP stops serving', () => {
  let issuer: StaticIssuer;
  afterAll(async () => {
    await issuer?.close();
  });

  it('when a served JWKS lacks a key, tokens signed by it are refused at once, and an outage does not bring it back', async () => {
    issuer = await startStaticIssuer();
    const h = await harnessFor(issuer.issuer, 'coffer', ', jwksRefreshSeconds: 1', []);
    const old = issuer.current;
    const oldToken = await signToken(old, longLived(issuer.issuer, 'coffer', 'a'));
    expect((await h.call('GET', '/v1/whoami', { token: oldToken })).status).toBe(200);

    const next = await issuer.rotate({ retire: true });
    const newToken = await signToken(next, longLived(issuer.issuer, 'coffer', 'b'));
    await new Promise((r) => setTimeout(r, 1100)); // past the refresh interval
    expect((await h.call('GET', '/v1/whoami', { token: newToken })).status).toBe(200);
    // The JWKS just served lacks the old key: refused at once.
    expect((await h.call('GET', '/v1/whoami', { token: oldToken })).status).toBe(401);

    // The IdP goes down and the cache ages: the last served set (new key only) still decides.
    issuer.setDown(true);
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + HOUR });
    expect((await h.call('GET', '/v1/whoami', { token: newToken })).status).toBe(200);
    expect((await h.call('GET', '/v1/whoami', { token: oldToken })).status).toBe(401);
  });
});
