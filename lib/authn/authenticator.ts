import { decodeJwt } from 'jose';
import { IdentityProviderUnavailableError, UnauthenticatedError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { AuthRefusal, bearerToken } from './bearer.js';
import type { CertificateIdentity } from './certificate.js';
import { UnusableClaimsError } from './claims.js';
import { isIamPath, principalFromIamCaller } from './iam.js';
import type { Authenticator, AuthRequest, Principal } from './principal.js';
import { VerifiedTokenCache } from './token-cache.js';
import type { TokenVerifier } from './verifier.js';

export interface CofferAuthenticatorOptions {
  /** One verifier per trusted issuer (the dev issuer is one more). Their `iss` must differ. */
  readonly verifiers: readonly TokenVerifier[];
  /** Receives one line per refused request: why, the issuer alias, the request id; never the token. */
  readonly logger?: Logger;
  /** Maps client certificates to workloads; without it, a certificate authenticates nothing. */
  readonly certificates?: CertificateIdentity;
  /** Verified tokens are remembered this long (token-cache.ts); 0 checks every signature. */
  readonly tokenCacheSeconds?: number;
}

/**
 * Stable, non-secret fields saying why a token was refused, for the operator's log: our own
 * refusal reason, or jose's error code with the claim and check that failed (`exp` `check_failed`,
 * `aud` `check_failed`, `typ` `check_failed`, `exp` `missing`...).
 */
function reasonOf(err: unknown): Record<string, string> {
  if (err instanceof AuthRefusal) return { ...err.logFields, reason: err.reason };
  if (err instanceof UnusableClaimsError) return { reason: 'unusable_id_claim' };
  const e = err as { code?: unknown; claim?: unknown; reason?: unknown } | null;
  const code = e?.code;
  if (typeof code !== 'string') return { reason: err instanceof Error ? err.name.slice(0, 64) : 'unknown' };
  return {
    reason: code.slice(0, 64),
    ...(typeof e?.claim === 'string' ? { claim: e.claim.slice(0, 64) } : {}),
    ...(typeof e?.reason === 'string' ? { check: e.reason.slice(0, 64) } : {}),
  };
}

/** An unverified, caller-supplied string made safe to log: bounded and without control characters. */
function loggable(value: string, max = 200): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to remove them
  return value.replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, max);
}

/**
 * The one authenticator of the app, for every way in:
 * - On the IAM prefix (`/iam/v1/...`) the caller is the one API Gateway's IAM authorizer put in
 *   the request context (`AuthRequest.iamCaller`); without it the request is refused. The
 *   Authorization header there is SigV4, checked by API Gateway, and is not read.
 * - Everywhere else a bearer token counts (an `iamCaller` is ignored): its unverified `iss`
 *   only selects the verifier (exact match), which then checks the whole token, `iss` included.
 *   A request without an Authorization header that came with a verified client certificate is
 *   the certificate's workload (certificate.ts).
 * Every failure is the same UnauthenticatedError (401, "authentication required").
 */
export class CofferAuthenticator implements Authenticator {
  private readonly byIssuer = new Map<string, TokenVerifier>();
  private readonly logger: Logger;
  private readonly certificates: CertificateIdentity | undefined;
  private readonly verified: VerifiedTokenCache;

  constructor(options: CofferAuthenticatorOptions) {
    for (const verifier of options.verifiers) {
      if (this.byIssuer.has(verifier.issuer)) throw new Error(`two verifiers for issuer ${verifier.issuer}`);
      this.byIssuer.set(verifier.issuer, verifier);
    }
    this.logger = options.logger ?? silentLogger;
    this.certificates = options.certificates;
    this.verified = new VerifiedTokenCache(
      options.tokenCacheSeconds !== undefined ? { ttlSeconds: options.tokenCacheSeconds } : {},
    );
  }

  /** The aliases of the trusted issuers, in configuration order. */
  get issuers(): string[] {
    return [...this.byIssuer.values()].map((v) => v.alias);
  }

  async authenticate(request: AuthRequest): Promise<Principal> {
    const refuse = (fields: Record<string, string>): never => {
      this.logger.warn('authentication refused', {
        ...(request.requestId !== undefined ? { requestId: request.requestId } : {}),
        ...fields,
      });
      throw new UnauthenticatedError();
    };
    if (isIamPath(request.path)) {
      if (!request.iamCaller) return refuse({ method: 'iam', reason: 'no_iam_context' });
      try {
        return principalFromIamCaller(request.iamCaller);
      } catch (err) {
        // The ARN comes from API Gateway's authorizer (the caller proved it), so it may be logged.
        return refuse({ method: 'iam', ...reasonOf(err), arn: loggable(request.iamCaller.userArn, 2048) });
      }
    }
    // A bearer token, when sent, is what the caller chose to be: the certificate then only secured
    // the connection. Without one, a verified certificate is the caller's identity.
    if (request.authorization.length === 0 && request.clientCertificate && this.certificates) {
      try {
        return this.certificates.principal(request.clientCertificate);
      } catch (err) {
        return refuse({ method: 'mtls', source: request.clientCertificate.source, ...reasonOf(err) });
      }
    }
    let token: string;
    let claims: ReturnType<typeof decodeJwt>;
    try {
      token = bearerToken(request.authorization);
    } catch (err) {
      return refuse({
        method: 'bearer',
        reason: err instanceof AuthRefusal ? err.reason : 'malformed_token',
      });
    }
    const key = VerifiedTokenCache.keyOf(token);
    // A token seen before is found by its hash: only the verifier that verified this very token
    // (so the one its issuer maps to) is stored with it, and its key epoch still has to match.
    const seenBy = this.verified.verifierOf(key) as TokenVerifier | undefined;
    if (seenBy) {
      const known = this.verified.get(key, seenBy, seenBy.keyEpoch?.() ?? 0);
      if (known) return known;
    }
    try {
      claims = decodeJwt(token);
    } catch (err) {
      return refuse({
        method: 'bearer',
        reason: err instanceof AuthRefusal ? err.reason : 'malformed_token',
      });
    }
    const iss = claims.iss;
    const verifier = typeof iss === 'string' ? this.byIssuer.get(iss) : undefined;
    if (!verifier) {
      // The unverified iss is logged so that an operator can see a near miss (a trailing slash).
      return refuse({
        method: 'bearer',
        reason: 'unknown_issuer',
        ...(typeof iss === 'string' ? { tokenIssuer: loggable(iss) } : {}),
      });
    }
    const epoch = verifier.keyEpoch?.() ?? 0;
    const known = this.verified.get(key, verifier, epoch);
    if (known) return known;
    try {
      const principal = await verifier.verify(token);
      this.verified.set(key, principal, verifier, epoch, claims.exp);
      return principal;
    } catch (err) {
      // Only a trusted issuer's outage, with no key set young enough, is told apart (503): the
      // caller learns that its IdP is down, never which check a token failed.
      if (err instanceof IdentityProviderUnavailableError) {
        this.logger.warn('authentication impossible: identity provider unreachable', {
          ...(request.requestId !== undefined ? { requestId: request.requestId } : {}),
          method: 'bearer',
          issuer: verifier.alias,
        });
        throw err;
      }
      return refuse({ method: 'bearer', issuer: verifier.alias, ...reasonOf(err) });
    }
  }
}
