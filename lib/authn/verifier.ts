import type { Principal } from './principal.js';

/**
 * Verifies bearer tokens of one issuer. The multi-issuer authenticator picks a verifier by the
 * token's unverified `iss` (exact match) and then the verifier checks everything, `iss` included.
 */
export interface TokenVerifier {
  /** The exact `iss` this verifier accepts. */
  readonly issuer: string;
  /** The issuer's alias (the prefix of principal ids). */
  readonly alias: string;
  /** Returns the principal, or throws (any error) when the token does not verify. */
  verify(token: string): Promise<Principal>;
  /**
   * Changes whenever the key set that verifies tokens changes (the IdP served another JWKS), so
   * that tokens verified under the old set are checked again. Absent: the keys never change.
   */
  keyEpoch?(): number;
}
