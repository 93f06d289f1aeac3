import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAuthenticator } from '../../lib/authn/build.js';
import { parseConfig } from '../../lib/config-file.js';
import { jsonLogger } from '../../lib/log.js';
import { createHarness, type Harness } from '../support/harness.js';
import { startTestIdp, type TestIdp } from '../support/oidc-idp.js';
import {
  accessClaims,
  type CountingServer,
  hs256WithPublicKey,
  newKey,
  signToken,
  startDecoy,
  type TestKey,
  tamperPayload,
  unsignedToken,
} from '../support/oidc-tokens.js';

const UNAUTHENTICATED = { code: 'unauthenticated', message: 'authentication required' };

/**
 * Every attack gets 401 with the same body (only the request id differs), so a caller learns
 * nothing about which check failed.
 */
describe('bearer token attacks', () => {
  let idp: TestIdp;
  let stranger: TestIdp;
  let decoy: CountingServer;
  let attacker: TestKey;
  let idpKey: TestKey;
  let h: Harness;
  const logs: string[] = [];

  beforeAll(async () => {
    idp = await startTestIdp({ machineClients: ['svc-a'], groups: { 'svc-a': ['eng'] } });
    stranger = await startTestIdp({ audience: 'coffer-api', machineClients: ['svc-x'] });
    attacker = await newKey('RS256', 'attacker');
    decoy = await startDecoy(attacker);
    idpKey = { ...idp.signingKey, alg: 'RS256' };
    const config = parseConfig(
      `issuers:
  - alias: corp
    issuer: ${idp.issuer}
    audiences: [coffer-api]
    algorithms: [RS256, ES256]
    allowHttpLoopback: true
    groupMapping: { eng: [engineers] }
`,
      { env: {} },
    );
    h = await createHarness({
      label: 'oidcatk',
      authenticator: () => buildAuthenticator({ config, logger: jsonLogger((l) => logs.push(l)) }),
    });
    // Warm the JWKS so that later fetch counts measure only what the attacks cause.
    const warm = await h.call('GET', '/v1/whoami', { token: await idp.clientCredentialsToken('svc-a') });
    expect(warm.status).toBe(200);
  });

  afterAll(async () => {
    await idp?.close();
    await stranger?.close();
    await decoy?.close();
  });

  async function expectRefused(token: string | null, headers: Record<string, string> = {}): Promise<void> {
    const res = await h.call('GET', '/v1/whoami', { token, headers });
    expect(res.status).toBe(401);
    expect(Object.keys(res.body.error).sort()).toEqual(['code', 'message', 'requestId']);
    expect(res.body.error).toMatchObject(UNAUTHENTICATED);
    // The challenge names the scheme only: no error code or description (RFC 6750 allows them).
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="coffer"');
    // Not even the secret listing route leaks anything else.
    const list = await h.call('GET', '/v1/list?prefix=', { token, headers });
    expect(list.status).toBe(401);
    expect(list.body.error).toMatchObject(UNAUTHENTICATED);
  }

  const valid = (extra = {}) =>
    accessClaims(idp.issuer, 'coffer-api', 'svc-a', { groups: ['eng'], ...extra });

  it('when a token is signed correctly by the configured issuer, it is accepted (control)', async () => {
    const res = await h.call('GET', '/v1/whoami', { token: await signToken(idpKey, valid()) });
    expect(res.status).toBe(200);
    expect(res.body.id).toBe('corp:svc-a');
  });

  it('when alg is none, it is refused', async () => {
    await expectRefused(unsignedToken(valid()));
    await expectRefused(unsignedToken(valid(), { alg: 'None' }));
  });

  it('when HS256 is signed with the issuer’s public key, it is refused', async () => {
    await expectRefused(hs256WithPublicKey(idp.signingKey.publicJwk, valid(), idp.signingKey.kid));
    await expectRefused(hs256WithPublicKey(idp.signingKey.publicJwk, valid()));
  });

  it('when the token comes from an unconfigured issuer, it is refused, even claiming the audience', async () => {
    await expectRefused(await stranger.clientCredentialsToken('svc-x'));
    // The stranger's key with our issuer's iss is just a bad signature.
    await expectRefused(await signToken({ ...stranger.signingKey, alg: 'RS256' }, valid()));
    // No iss at all, or iss of a different form.
    const { iss: _drop, ...noIss } = valid();
    await expectRefused(await signToken(idpKey, noIss));
    await expectRefused(await signToken(idpKey, valid({ iss: `${idp.issuer}/` })));
  });

  it('when the audience is wrong or missing, it is refused', async () => {
    await expectRefused(await signToken(idpKey, valid({ aud: 'other-api' })));
    await expectRefused(await signToken(idpKey, valid({ aud: ['other-api', 'coffer'] })));
    const { aud: _drop, ...noAud } = valid();
    await expectRefused(await signToken(idpKey, noAud));
    // A list containing the audience is fine.
    const ok = await h.call('GET', '/v1/whoami', {
      token: await signToken(idpKey, valid({ aud: ['x', 'coffer-api'] })),
    });
    expect(ok.status).toBe(200);
  });

  it('when expired or not yet valid beyond 60 s of skew, it is refused; within the skew it passes', async () => {
    const now = Math.floor(Date.now() / 1000);
    await expectRefused(await signToken(idpKey, valid({ iat: now - 900, exp: now - 90 })));
    await expectRefused(await signToken(idpKey, valid({ nbf: now + 90 })));
    const { exp: _drop, ...noExp } = valid();
    await expectRefused(await signToken(idpKey, noExp));
    const withinSkew = await signToken(idpKey, valid({ iat: now - 900, exp: now - 30, nbf: now + 30 }));
    expect((await h.call('GET', '/v1/whoami', { token: withinSkew })).status).toBe(200);
  });

  it('when a token expired 61 s ago or becomes valid in just over 60 s, it is refused; 55 s is within the skew', async () => {
    const now = Math.floor(Date.now() / 1000);
    await expectRefused(await signToken(idpKey, valid({ iat: now - 900, exp: now - 61 })));
    // nbf one second further than exp: a clock tick between signing and checking must not let it pass.
    await expectRefused(await signToken(idpKey, valid({ nbf: now + 62 })));
    const edge = await signToken(idpKey, valid({ iat: now - 900, exp: now - 55, nbf: now + 55 }));
    expect((await h.call('GET', '/v1/whoami', { token: edge })).status).toBe(200);
  });

  it('when the kid is unknown, it is refused', async () => {
    await expectRefused(await signToken(attacker, valid()));
    await expectRefused(await signToken({ ...attacker, kid: idp.signingKey.kid }, valid()));
  });

  it('when kid, jku, x5u, jwk or x5c point at other keys, they are refused and nothing is fetched', async () => {
    const jwksBefore = idp.countRequests('/jwks');
    await expectRefused(await signToken(attacker, valid(), { kid: `${decoy.url}/jwks` }));
    await expectRefused(await signToken(attacker, valid(), { jku: `${decoy.url}/jwks` }));
    await expectRefused(await signToken(idpKey, valid(), { jku: `${decoy.url}/jwks` }));
    await expectRefused(await signToken(attacker, valid(), { x5u: `${decoy.url}/cert.pem` }));
    await expectRefused(await signToken(attacker, valid(), { jwk: attacker.publicJwk }));
    await expectRefused(await signToken(attacker, valid(), { x5c: ['MIIB'] }));
    expect(decoy.requests).toEqual([]);
    // The unknown kid may cost one JWKS refresh at the real issuer, never more (cool-down).
    expect(idp.countRequests('/jwks') - jwksBefore).toBeLessThanOrEqual(1);
  });

  it('when the payload is tampered with, it is refused', async () => {
    const token = await signToken(idpKey, valid());
    await expectRefused(tamperPayload(token, (c) => ({ ...c, groups: ['eng', 'admins'] })));
    await expectRefused(tamperPayload(token, (c) => ({ ...c, sub: 'root' })));
    await expectRefused(tamperPayload(token, (c) => ({ ...c, exp: (c.exp as number) + 3600 })));
    // Signature of another token.
    const other = await signToken(idpKey, valid({ sub: 'other' }));
    await expectRefused(`${token.split('.').slice(0, 2).join('.')}.${other.split('.')[2]}`);
  });

  it('when the token is over 8 KiB, it is refused even though the issuer signed it', async () => {
    const big = await signToken(idpKey, valid({ padding: 'x'.repeat(8 * 1024) }));
    expect(big.length).toBeGreaterThan(8 * 1024);
    await expectRefused(big);
  });

  it('when the Authorization header is malformed or missing, it is refused', async () => {
    const token = await signToken(idpKey, valid());
    for (const authorization of [
      'Bearer',
      'Bearer ',
      `Basic ${token}`,
      `Bearer\t${token}`,
      `Bearer${token}`,
      `Bearer ${token} extra`,
      `Bearer ${token.split('.').slice(0, 2).join('.')}`,
      `Bearer ${token}.more`,
      `Token ${token}`,
      token,
      'Bearer a.b.c',
      'Bearer e30.e30.',
    ]) {
      await expectRefused(null, { authorization });
    }
    await expectRefused(null);
  });

  it('when the scheme is written in another case or with extra spaces (RFC 9110: 1*SP), it is accepted', async () => {
    const token = await signToken(idpKey, valid());
    for (const authorization of [
      `bearer ${token}`,
      `BEARER ${token}`,
      `bEaReR ${token}`,
      `Bearer   ${token}`,
      `  Bearer ${token}  `,
    ]) {
      const res = await h.call('GET', '/v1/whoami', { token: null, headers: { authorization } });
      expect(res.status, authorization.slice(0, 12)).toBe(200);
      expect(res.body.id).toBe('corp:svc-a');
    }
  });

  it('when two Authorization headers are sent, it is refused', async () => {
    const token = await signToken(idpKey, valid());
    const res = await h.app.request('/v1/whoami', {
      headers: [
        ['authorization', `Bearer ${token}`],
        ['authorization', `Bearer ${token}`],
      ],
    });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: unknown }).error).toMatchObject(UNAUTHENTICATED);
  });

  it('when a valid bearer token is used on the IAM prefix, it is refused', async () => {
    const res = await h.call('GET', '/iam/v1/whoami', { token: await signToken(idpKey, valid()) });
    expect(res.status).toBe(401);
    expect(res.body.error).toMatchObject(UNAUTHENTICATED);
  });

  it('when tokens are refused, the log has the reason but never a token', () => {
    const text = logs.join('\n');
    expect(text).toContain('"reason":"ERR_JWT_EXPIRED"');
    expect(text).toContain('"reason":"unknown_issuer"');
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
  });

  it('when a token is refused, the one log line says which check failed, with the request id', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await signToken(idpKey, valid());
    const { exp: _drop, ...noExp } = valid();
    const cases: [string | null, Record<string, string>, Record<string, string>][] = [
      [null, {}, { method: 'bearer', reason: 'no_authorization_header' }],
      [null, { authorization: `Basic ${token}` }, { reason: 'not_bearer_scheme' }],
      [null, { authorization: 'Bearer a.b' }, { reason: 'malformed_token' }],
      [
        null,
        { authorization: `Bearer ${token}, Bearer ${token}` },
        { reason: 'several_authorization_headers' },
      ],
      [await signToken(idpKey, valid({ padding: 'x'.repeat(8 * 1024) })), {}, { reason: 'token_too_large' }],
      [unsignedToken(valid()), {}, { issuer: 'corp', reason: 'algorithm_not_allowed' }],
      [hs256WithPublicKey(idp.signingKey.publicJwk, valid()), {}, { reason: 'algorithm_not_allowed' }],
      [
        await signToken(attacker, valid(), { jku: `${decoy.url}/jwks` }),
        {},
        { reason: 'forbidden_header_jku' },
      ],
      [await signToken(attacker, valid(), { x5u: `${decoy.url}/c` }), {}, { reason: 'forbidden_header_x5u' }],
      [
        await signToken(attacker, valid(), { jwk: attacker.publicJwk }),
        {},
        { reason: 'forbidden_header_jwk' },
      ],
      [await signToken(attacker, valid()), {}, { reason: 'ERR_JWKS_NO_MATCHING_KEY' }],
      [
        tamperPayload(token, (c) => ({ ...c, sub: 'root' })),
        {},
        { reason: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' },
      ],
      [
        await signToken(idpKey, valid({ iat: now - 900, exp: now - 61 })),
        {},
        { issuer: 'corp', reason: 'ERR_JWT_EXPIRED', claim: 'exp', check: 'check_failed' },
      ],
      [
        await signToken(idpKey, noExp),
        {},
        { reason: 'ERR_JWT_CLAIM_VALIDATION_FAILED', claim: 'exp', check: 'missing' },
      ],
      [await signToken(idpKey, valid({ nbf: now + 90 })), {}, { claim: 'nbf', check: 'check_failed' }],
      [await signToken(idpKey, valid({ aud: 'other-api' })), {}, { claim: 'aud', check: 'check_failed' }],
      [
        await signToken(idpKey, valid({ iss: `${idp.issuer}/` })),
        {},
        { reason: 'unknown_issuer', tokenIssuer: `${idp.issuer}/` },
      ],
      [await signToken(idpKey, valid({ sub: '' })), {}, { issuer: 'corp', reason: 'unusable_id_claim' }],
    ];
    for (const [bearer, headers, expected] of cases) {
      logs.length = 0;
      const res = await h.call('GET', '/v1/whoami', { token: bearer, headers });
      expect(res.status).toBe(401);
      const refusals = logs.map((l) => JSON.parse(l)).filter((l) => l.message === 'authentication refused');
      expect(refusals, JSON.stringify(expected)).toHaveLength(1);
      expect(refusals[0]).toMatchObject({ level: 'warn', requestId: res.body.error.requestId, ...expected });
      expect(logs.join('\n')).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/);
    }
  });
});
