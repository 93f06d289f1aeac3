import { UnauthenticatedError } from '../errors.js';

/** Tokens larger than this are refused before any parsing. */
export const MAX_TOKEN_BYTES = 8 * 1024;

/**
 * A refused credential, with a stable, non-secret reason for the operator's log. The caller sees
 * only the UnauthenticatedError it is ("authentication required"); `reason` never reaches a
 * response body.
 */
export class AuthRefusal extends UnauthenticatedError {
  /**
   * @param reason stable reason code for the log
   * @param logFields more non-secret fields for the log (claim or mapping names, never a value of
   *   the credential). Not `details`: those of a CofferError go into the response body.
   */
  constructor(
    readonly reason: string,
    readonly logFields: Readonly<Record<string, string>> = {},
  ) {
    super();
  }
}

// RFC 9110 §11.4: credentials = auth-scheme [ 1*SP token68 ]; the scheme is case-insensitive.
// The token must also be a compact JWS (three base64url parts, the signature possibly empty so
// that `alg: none` reaches the check that names it).
const BEARER = /^Bearer +(\S+)$/i;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/**
 * Extracts the bearer token from the Authorization headers: exactly one header, scheme `Bearer`
 * (any case, one or more spaces before the token), a compact JWS shape, at most 8 KiB. Anything
 * else is an AuthRefusal naming what was wrong.
 */
export function bearerToken(authorization: readonly string[]): string {
  if (authorization.length === 0) throw new AuthRefusal('no_authorization_header');
  if (authorization.length !== 1) throw new AuthRefusal('several_authorization_headers');
  const header = (authorization[0] as string).trim();
  // A comma means the header was sent twice and folded into one value.
  if (header.includes(',')) throw new AuthRefusal('several_authorization_headers');
  const match = BEARER.exec(header);
  if (!match) throw new AuthRefusal('not_bearer_scheme');
  const token = match[1] as string;
  if (token.length > MAX_TOKEN_BYTES) throw new AuthRefusal('token_too_large');
  if (!COMPACT_JWS.test(token)) throw new AuthRefusal('malformed_token');
  return token;
}
