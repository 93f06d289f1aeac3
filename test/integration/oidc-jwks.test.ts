import { afterEach, describe, expect, it } from 'vitest';
import { CofferAuthenticator } from '../../lib/authn/authenticator.js';
import { OidcTokenVerifier } from '../../lib/authn/oidc.js';
import { type IssuerConfig, parseConfig } from '../../lib/config-file.js';
import { UnauthenticatedError } from '../../lib/errors.js';
import { jsonLogger } from '../../lib/log.js';
import {
  accessClaims,
  newKey,
  type StaticIssuer,
  signToken,
  startStaticIssuer,
} from '../support/oidc-tokens.js';

function issuerConfig(url: string, extra = ''): IssuerConfig {
  const config = parseConfig(
    `issuers:\n  - { alias: rot, issuer: "${url}", audiences: [coffer], allowHttpLoopback: true${extra} }\n`,
    { env: {} },
  );
  return config.issuers[0] as IssuerConfig;
}

const request = (token: string) => ({ path: '/v1/whoami', authorization: [`Bearer ${token}`] });

/** JWKS caching, refresh on unknown kid at most once per interval, and discovery behaviour. */
describe('JWKS cache and discovery', () => {
  let issuer: StaticIssuer | undefined;
  afterEach(async () => {
    await issuer?.close();
    issuer = undefined;
  });

  it('when the IdP rotates its key, a token with the new kid verifies after one refetch', async () => {
    issuer = await startStaticIssuer();
    const auth = new CofferAuthenticator({
      verifiers: [new OidcTokenVerifier(issuerConfig(issuer.issuer, ', jwksRefreshSeconds: 1'))],
    });
    const first = await signToken(issuer.current, accessClaims(issuer.issuer, 'coffer', 'a'));
    expect((await auth.authenticate(request(first))).id).toBe('rot:a');
    expect(issuer.count('/jwks')).toBe(1);
    expect(issuer.count('/.well-known/openid-configuration')).toBe(1);

    await new Promise((r) => setTimeout(r, 1100)); // let the refresh interval pass
    const rotated = await issuer.rotate({ retire: true });
    const second = await signToken(rotated, accessClaims(issuer.issuer, 'coffer', 'b'));
    expect((await auth.authenticate(request(second))).id).toBe('rot:b');
    expect(issuer.count('/jwks')).toBe(2);
    // Discovery is not repeated.
    expect(issuer.count('/.well-known/openid-configuration')).toBe(1);
  });

  it('when many tokens carry forged kids, the JWKS is fetched at most once per interval', async () => {
    issuer = await startStaticIssuer();
    const auth = new CofferAuthenticator({
      verifiers: [new OidcTokenVerifier(issuerConfig(issuer.issuer, ', jwksRefreshSeconds: 60'))],
    });
    const good = await signToken(issuer.current, accessClaims(issuer.issuer, 'coffer', 'a'));
    await auth.authenticate(request(good));
    expect(issuer.count('/jwks')).toBe(1);

    const forger = await newKey();
    const forged = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        signToken({ ...forger, kid: `forged-${i}` }, accessClaims(issuer?.issuer as string, 'coffer', 'x')),
      ),
    );
    const results = await Promise.allSettled(forged.map((t) => auth.authenticate(request(t))));
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof UnauthenticatedError)).toBe(
      true,
    );
    // The first fetch happened under a second ago: no refetch at all within the interval.
    expect(issuer.count('/jwks')).toBe(1);

    // And a rotated key is not seen until the interval passes: fail closed, no storm.
    const rotated = await issuer.rotate();
    const newKid = await signToken(rotated, accessClaims(issuer.issuer, 'coffer', 'b'));
    await expect(auth.authenticate(request(newKid))).rejects.toBeInstanceOf(UnauthenticatedError);
    expect(issuer.count('/jwks')).toBe(1);
  });

  it('when the interval has passed, one unknown kid triggers exactly one refetch', async () => {
    issuer = await startStaticIssuer();
    const auth = new CofferAuthenticator({
      verifiers: [new OidcTokenVerifier(issuerConfig(issuer.issuer, ', jwksRefreshSeconds: 1'))],
    });
    await auth.authenticate(
      request(await signToken(issuer.current, accessClaims(issuer.issuer, 'coffer', 'a'))),
    );
    await new Promise((r) => setTimeout(r, 1100));
    const forger = await newKey();
    const forged = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        signToken({ ...forger, kid: `f${i}` }, accessClaims(issuer?.issuer as string, 'coffer', 'x')),
      ),
    );
    await Promise.allSettled(forged.map((t) => auth.authenticate(request(t))));
    expect(issuer.count('/jwks')).toBe(2);
  });

  it('when discovery reports another issuer, tokens are refused and the mismatch is logged', async () => {
    issuer = await startStaticIssuer();
    issuer.lieAboutIssuer(`${issuer.issuer}/`);
    const logs: string[] = [];
    const logger = jsonLogger((l) => logs.push(l));
    const auth = new CofferAuthenticator({
      verifiers: [new OidcTokenVerifier(issuerConfig(issuer.issuer), { logger })],
      logger,
    });
    const token = await signToken(issuer.current, accessClaims(issuer.issuer, 'coffer', 'a'));
    await expect(auth.authenticate(request(token))).rejects.toBeInstanceOf(UnauthenticatedError);
    expect(issuer.count('/jwks')).toBe(0);
    expect(logs.join('\n')).toContain('differs from the configured');
  });

  it('when the IdP is down, tokens are refused, discovery backs off, and it recovers', async () => {
    issuer = await startStaticIssuer();
    issuer.setDown(true);
    let now = 1_000_000;
    const auth = new CofferAuthenticator({
      verifiers: [new OidcTokenVerifier(issuerConfig(issuer.issuer), { now: () => now })],
    });
    const token = await signToken(issuer.current, accessClaims(issuer.issuer, 'coffer', 'a'));
    await expect(auth.authenticate(request(token))).rejects.toBeInstanceOf(UnauthenticatedError);
    const attempts = issuer.count('/.well-known/openid-configuration');
    expect(attempts).toBe(1);
    issuer.setDown(false);
    // Within the back-off: refused without asking the IdP again.
    for (let i = 0; i < 5; i++) {
      await expect(auth.authenticate(request(token))).rejects.toBeInstanceOf(UnauthenticatedError);
    }
    expect(issuer.count('/.well-known/openid-configuration')).toBe(attempts);
    now += 11_000;
    expect((await auth.authenticate(request(token))).id).toBe('rot:a');
  });

  it('when the JWKS endpoint fails, forged kids cause no fetch storm and cached keys keep working', async () => {
    issuer = await startStaticIssuer();
    let now = 1_000_000;
    const auth = new CofferAuthenticator({
      verifiers: [
        new OidcTokenVerifier(issuerConfig(issuer.issuer, ', jwksRefreshSeconds: 1'), { now: () => now }),
      ],
    });
    const valid = await signToken(issuer.current, accessClaims(issuer.issuer, 'coffer', 'a'));
    await auth.authenticate(request(valid));
    expect(issuer.count('/jwks')).toBe(1);

    await new Promise((r) => setTimeout(r, 1100)); // past jose's cool-down
    issuer.setDown(true);
    const forger = await newKey();
    const forge = (i: number) =>
      signToken({ ...forger, kid: `f${i}` }, accessClaims(issuer?.issuer as string, 'coffer', 'x'));
    await expect(auth.authenticate(request(await forge(0)))).rejects.toBeInstanceOf(UnauthenticatedError);
    expect(issuer.count('/jwks')).toBe(2); // one failed attempt
    for (let i = 1; i <= 20; i++) {
      await expect(auth.authenticate(request(await forge(i)))).rejects.toBeInstanceOf(UnauthenticatedError);
    }
    expect(issuer.count('/jwks')).toBe(2);
    // A token whose key is cached still verifies during the outage.
    expect((await auth.authenticate(request(valid))).id).toBe('rot:a');

    issuer.setDown(false);
    const rotated = await issuer.rotate();
    now += 11_000;
    const next = await signToken(rotated, accessClaims(issuer.issuer, 'coffer', 'b'));
    expect((await auth.authenticate(request(next))).id).toBe('rot:b');
    expect(issuer.count('/jwks')).toBe(3);
  });

  it('when the issuer is configured with a trailing slash, only tokens whose iss has it verify', async () => {
    issuer = await startStaticIssuer();
    const withSlash = `${issuer.issuer}/`;
    issuer.lieAboutIssuer(withSlash); // the IdP's metadata says "…/", as Auth0's does
    const auth = new CofferAuthenticator({ verifiers: [new OidcTokenVerifier(issuerConfig(withSlash))] });
    const ok = await signToken(issuer.current, accessClaims(withSlash, 'coffer', 'a'));
    expect((await auth.authenticate(request(ok))).id).toBe('rot:a');
    const noSlash = await signToken(issuer.current, accessClaims(issuer.issuer, 'coffer', 'a'));
    await expect(auth.authenticate(request(noSlash))).rejects.toBeInstanceOf(UnauthenticatedError);
    const twoSlashes = await signToken(issuer.current, accessClaims(`${withSlash}/`, 'coffer', 'a'));
    await expect(auth.authenticate(request(twoSlashes))).rejects.toBeInstanceOf(UnauthenticatedError);
  });

  it('when a jwksUri is configured, discovery is skipped', async () => {
    issuer = await startStaticIssuer();
    const auth = new CofferAuthenticator({
      verifiers: [new OidcTokenVerifier(issuerConfig(issuer.issuer, `, jwksUri: "${issuer.issuer}/jwks"`))],
    });
    const token = await signToken(issuer.current, accessClaims(issuer.issuer, 'coffer', 'a'));
    expect((await auth.authenticate(request(token))).id).toBe('rot:a');
    expect(issuer.count('/.well-known/openid-configuration')).toBe(0);
  });
});
