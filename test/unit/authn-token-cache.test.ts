import { afterEach, describe, expect, it, vi } from 'vitest';
import { CofferAuthenticator } from '../../lib/authn/authenticator.js';
import type { Principal } from '../../lib/authn/principal.js';
import type { TokenVerifier } from '../../lib/authn/verifier.js';
import { UnauthenticatedError } from '../../lib/errors.js';

const ISS = 'https://idp.example';
const b64 = (x: unknown) => Buffer.from(JSON.stringify(x)).toString('base64url');
/** A compact JWS shape; the fake verifier below decides whether it "verifies". */
const token = (sub: string, exp: number) => `${b64({ alg: 'RS256' })}.${b64({ iss: ISS, sub, exp })}.c2ln`;
const nowSeconds = () => Math.floor(Date.now() / 1000);

class CountingVerifier implements TokenVerifier {
  readonly issuer = ISS;
  readonly alias = 'corp';
  calls = 0;
  epoch = 0;
  valid = new Set<string>();
  async verify(t: string): Promise<Principal> {
    this.calls++;
    if (!this.valid.has(t)) throw new Error('signature');
    const sub = JSON.parse(Buffer.from(t.split('.')[1] as string, 'base64url').toString()).sub as string;
    return {
      type: 'User',
      id: `corp:${sub}`,
      groups: [],
      attributes: {},
      authMethod: 'oidc',
      issuer: 'corp',
    };
  }
  keyEpoch(): number {
    return this.epoch;
  }
}

const request = (t: string) => ({ authorization: [`Bearer ${t}`], path: '/v1/whoami' });

afterEach(() => {
  vi.useRealTimers();
});

describe('verified tokens are remembered', () => {
  it('when one token is used many times, its signature is checked once, and each answer names the same principal', async () => {
    const verifier = new CountingVerifier();
    const auth = new CofferAuthenticator({ verifiers: [verifier] });
    const t = token('alice', nowSeconds() + 3600);
    verifier.valid.add(t);
    for (let i = 0; i < 50; i++) expect((await auth.authenticate(request(t))).id).toBe('corp:alice');
    expect(verifier.calls).toBe(1);
  });

  it('when a token did not verify, it is checked again each time (a failure is never remembered)', async () => {
    const verifier = new CountingVerifier();
    const auth = new CofferAuthenticator({ verifiers: [verifier] });
    const t = token('mallory', nowSeconds() + 3600);
    for (let i = 0; i < 3; i++)
      await expect(auth.authenticate(request(t))).rejects.toBeInstanceOf(UnauthenticatedError);
    expect(verifier.calls).toBe(3);
  });

  it('when the token expires, the remembered verification ends with it, before the cache time', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
    const verifier = new CountingVerifier();
    const auth = new CofferAuthenticator({ verifiers: [verifier], tokenCacheSeconds: 3600 });
    const t = token('bob', nowSeconds() + 10);
    verifier.valid.add(t);
    await auth.authenticate(request(t));
    vi.setSystemTime(Date.now() + 5_000);
    await auth.authenticate(request(t));
    expect(verifier.calls).toBe(1);
    vi.setSystemTime(Date.now() + 6_000);
    verifier.valid.delete(t); // as jose would refuse it now
    await expect(auth.authenticate(request(t))).rejects.toBeInstanceOf(UnauthenticatedError);
    expect(verifier.calls).toBe(2);
  });

  it('when the cache time has passed, the signature is checked again', async () => {
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
    const verifier = new CountingVerifier();
    const auth = new CofferAuthenticator({ verifiers: [verifier], tokenCacheSeconds: 60 });
    const t = token('carol', nowSeconds() + 3600);
    verifier.valid.add(t);
    await auth.authenticate(request(t));
    vi.setSystemTime(Date.now() + 61_000);
    await auth.authenticate(request(t));
    expect(verifier.calls).toBe(2);
  });

  it('when the issuer key set changes, tokens verified under the old one are checked again', async () => {
    const verifier = new CountingVerifier();
    const auth = new CofferAuthenticator({ verifiers: [verifier] });
    const t = token('dave', nowSeconds() + 3600);
    verifier.valid.add(t);
    await auth.authenticate(request(t));
    verifier.epoch++;
    verifier.valid.delete(t); // its key is no longer served
    await expect(auth.authenticate(request(t))).rejects.toBeInstanceOf(UnauthenticatedError);
    expect(verifier.calls).toBe(2);
  });

  it('when the cache is off (0 s), every request checks the signature', async () => {
    const verifier = new CountingVerifier();
    const auth = new CofferAuthenticator({ verifiers: [verifier], tokenCacheSeconds: 0 });
    const t = token('erin', nowSeconds() + 3600);
    verifier.valid.add(t);
    for (let i = 0; i < 3; i++) await auth.authenticate(request(t));
    expect(verifier.calls).toBe(3);
  });

  it('when a token differs by one character of its signature, it is not the remembered one', async () => {
    const verifier = new CountingVerifier();
    const auth = new CofferAuthenticator({ verifiers: [verifier] });
    const t = token('frank', nowSeconds() + 3600);
    verifier.valid.add(t);
    await auth.authenticate(request(t));
    await expect(auth.authenticate(request(`${t.slice(0, -1)}x`))).rejects.toBeInstanceOf(
      UnauthenticatedError,
    );
    expect(verifier.calls).toBe(2);
  });
});
