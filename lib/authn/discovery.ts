import * as oidc from 'openid-client';
import { isLoopbackUrl } from '../config-file.js';

export interface DiscoveryOptions {
  /** Permits http:// for loopback issuers (tests and local IdPs). */
  readonly allowHttpLoopback: boolean;
  /** Seconds before the discovery request is abandoned. */
  readonly timeoutSeconds?: number;
  /** Replaces global fetch (tests). */
  readonly fetch?: typeof fetch;
}

/** Discovery failed or returned something unusable; the message is for operators' logs. */
export class DiscoveryError extends Error {}

/**
 * Finds an issuer's JWKS URL through OpenID Connect discovery (openid-client). The metadata's
 * `issuer` must equal the configured issuer exactly: openid-client compares normalised URLs, but
 * tokens are matched on the exact string, so a trailing-slash mismatch would refuse every token.
 */
export async function discoverJwksUri(issuer: string, options: DiscoveryOptions): Promise<URL> {
  const config = await oidc.discovery(
    new URL(issuer),
    // Discovery needs a client id; the resource server never uses it for a request.
    'coffer-resource-server',
    undefined,
    oidc.None(),
    {
      execute: options.allowHttpLoopback ? [oidc.allowInsecureRequests] : [],
      timeout: options.timeoutSeconds ?? 10,
      ...(options.fetch ? { [oidc.customFetch]: options.fetch as oidc.CustomFetch } : {}),
    },
  );
  const metadata = config.serverMetadata();
  if (metadata.issuer !== issuer) {
    throw new DiscoveryError(
      `discovered issuer "${metadata.issuer}" differs from the configured "${issuer}"`,
    );
  }
  if (typeof metadata.jwks_uri !== 'string') throw new DiscoveryError('discovery document has no jwks_uri');
  const jwksUri = new URL(metadata.jwks_uri);
  const httpOk = options.allowHttpLoopback && jwksUri.protocol === 'http:' && isLoopbackUrl(jwksUri);
  if (jwksUri.protocol !== 'https:' && !httpOk) throw new DiscoveryError('jwks_uri must use https');
  return jwksUri;
}
