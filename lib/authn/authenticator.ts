import { decodeJwt } from 'jose';
import { UnauthenticatedError } from '../errors.js';
import { type Logger, silentLogger } from '../log.js';
import { bearerToken } from './bearer.js';
import { isIamPath, principalFromIamCaller } from './iam.js';
import type { Authenticator, AuthRequest, Principal } from './principal.js';
import type { TokenVerifier } from './verifier.js';

export interface CofferAuthenticatorOptions {
  /** One verifier per trusted issuer (the dev issuer is one more). Their `iss` must differ. */
  readonly verifiers: readonly TokenVerifier[];
  /** Receives one line per refused token: the issuer alias and the check's code, never the token. */
  readonly logger?: Logger;
}

/** A stable, non-secret reason for the operator's log (jose's error codes, or a class name). */
function reasonOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') return code.slice(0, 64);
  return err instanceof Error ? err.name.slice(0, 64) : 'unknown';
}

/**
 * The one authenticator of the app, for every way in:
 * - On the IAM prefix (`/iam/v1/...`) the caller is the one API Gateway's IAM authorizer put in
 *   the request context (`AuthRequest.iamCaller`); without it the request is refused. The
 *   Authorization header there is SigV4, checked by API Gateway, and is not read.
 * - Everywhere else only a bearer token counts (an `iamCaller` is ignored): its unverified `iss`
 *   only selects the verifier (exact match), which then checks the whole token, `iss` included.
 * Every failure is the same UnauthenticatedError (401, "authentication required").
 */
export class CofferAuthenticator implements Authenticator {
  private readonly byIssuer = new Map<string, TokenVerifier>();
  private readonly logger: Logger;

  constructor(options: CofferAuthenticatorOptions) {
    for (const verifier of options.verifiers) {
      if (this.byIssuer.has(verifier.issuer)) throw new Error(`two verifiers for issuer ${verifier.issuer}`);
      this.byIssuer.set(verifier.issuer, verifier);
    }
    this.logger = options.logger ?? silentLogger;
  }

  /** The aliases of the trusted issuers, in configuration order. */
  get issuers(): string[] {
    return [...this.byIssuer.values()].map((v) => v.alias);
  }

  async authenticate(request: AuthRequest): Promise<Principal> {
    if (isIamPath(request.path)) {
      if (!request.iamCaller) throw new UnauthenticatedError();
      try {
        return principalFromIamCaller(request.iamCaller);
      } catch (err) {
        this.logger.warn('authentication refused', { method: 'iam', reason: 'unmapped_arn' });
        throw err;
      }
    }
    const token = bearerToken(request.authorization);
    let iss: unknown;
    try {
      iss = decodeJwt(token).iss;
    } catch {
      throw new UnauthenticatedError();
    }
    const verifier = typeof iss === 'string' ? this.byIssuer.get(iss) : undefined;
    if (!verifier) {
      this.logger.warn('authentication refused', { method: 'bearer', reason: 'unknown_issuer' });
      throw new UnauthenticatedError();
    }
    try {
      return await verifier.verify(token);
    } catch (err) {
      this.logger.warn('authentication refused', {
        method: 'bearer',
        issuer: verifier.alias,
        reason: reasonOf(err),
      });
      throw new UnauthenticatedError();
    }
  }
}
