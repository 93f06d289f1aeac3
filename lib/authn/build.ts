import type { KeyObject } from 'node:crypto';
import type { CofferConfig } from '../config-file.js';
import type { Logger } from '../log.js';
import { CofferAuthenticator } from './authenticator.js';
import { CertificateIdentity } from './certificate.js';
import { DevTokenVerifier } from './dev-authenticator.js';
import { OidcTokenVerifier } from './oidc.js';
import type { TokenVerifier } from './verifier.js';

export interface BuildAuthenticatorOptions {
  readonly config: CofferConfig;
  readonly logger: Logger;
  /** The local dev issuer's public key: only the local server passes it. */
  readonly devIssuerKey?: KeyObject;
  /** Replaces global fetch for discovery and JWKS (tests). */
  readonly fetch?: typeof fetch;
}

/**
 * The authenticator for a configuration: one verifier per configured issuer, plus the dev issuer
 * when its key is given (local server). The Lambda handler passes no dev key, so the dev issuer is
 * never trusted in AWS.
 */
export function buildAuthenticator(options: BuildAuthenticatorOptions): CofferAuthenticator {
  const verifiers: TokenVerifier[] = options.config.issuers.map(
    (issuer) =>
      new OidcTokenVerifier(issuer, {
        logger: options.logger,
        ...(options.fetch ? { fetch: options.fetch } : {}),
      }),
  );
  if (options.devIssuerKey) verifiers.push(new DevTokenVerifier(options.devIssuerKey));
  return new CofferAuthenticator({
    verifiers,
    logger: options.logger,
    // Certificates only arrive where an adapter verified them (a TLS listener with a client CA
    // bundle, API Gateway's mutual-TLS domain); the config's `mtls` section narrows what is accepted.
    certificates: new CertificateIdentity(options.config.mtls ? { mtls: options.config.mtls } : {}),
  });
}
