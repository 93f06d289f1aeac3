// The OpenID Connect side of `coffer login`: the IdP's configuration, token expiry and errors.
// Loaded by `coffer login` and to refresh an expired cached login, never on a plain CLI start.
import { decodeJwt } from 'jose';
import * as oidc from 'openid-client';
import { CofferClientError } from '../../packages/client/src/errors.js';
import { isLoopbackUrl } from '../loopback.js';

export { refreshTokenGrant } from 'openid-client';

/** Refuses plain http except to a loopback IdP the user explicitly allowed. */
export function checkIssuerUrl(issuer: string, allowHttpLoopback: boolean): URL {
  let url: URL;
  try {
    url = new URL(issuer);
  } catch {
    throw new CofferClientError('invalid_request', 0, 'the issuer must be an absolute https URL');
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:' && isLoopbackUrl(url) && allowHttpLoopback) return url;
  throw new CofferClientError(
    'invalid_request',
    0,
    'the issuer must use https (http only for a loopback IdP with --allow-http-loopback)',
  );
}

/** An openid-client configuration for the CLI, a public client (no secret; PKCE or device flow). */
export async function clientConfiguration(
  issuer: string,
  clientId: string,
  allowHttpLoopback: boolean,
): Promise<oidc.Configuration> {
  const url = checkIssuerUrl(issuer, allowHttpLoopback);
  try {
    return await oidc.discovery(url, clientId, undefined, oidc.None(), {
      execute: url.protocol === 'http:' ? [oidc.allowInsecureRequests] : [],
      timeout: 15,
    });
  } catch (err) {
    throw new CofferClientError(
      'unreachable',
      0,
      `cannot discover the issuer ${url.origin}: ${oauthReason(err)}`,
    );
  }
}

/** A short, non-secret reason from an openid-client error (the IdP's error code, or the error's own code). */
export function oauthReason(err: unknown): string {
  if (err instanceof oidc.ResponseBodyError || err instanceof oidc.AuthorizationResponseError)
    return err.error;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code;
  return err instanceof Error ? err.name : 'unknown error';
}

/** When the access token expires: `expires_in` if the IdP said, else the token's own `exp`. */
export function expiryOf(
  accessToken: string,
  expiresIn: number | undefined,
  now: number,
): number | undefined {
  if (expiresIn !== undefined) return now + expiresIn;
  try {
    const { exp } = decodeJwt(accessToken);
    return typeof exp === 'number' ? exp : undefined;
  } catch {
    return undefined;
  }
}
