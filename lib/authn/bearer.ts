import { UnauthenticatedError } from '../errors.js';

/** Tokens larger than this are refused before any parsing. */
export const MAX_TOKEN_BYTES = 8 * 1024;

/**
 * Extracts the bearer token from the Authorization headers: exactly one header, scheme `Bearer`,
 * a compact JWS shape, at most 8 KiB. Anything else is the same UnauthenticatedError.
 */
export function bearerToken(authorization: readonly string[]): string {
  if (authorization.length !== 1) throw new UnauthenticatedError();
  const header = authorization[0] as string;
  // A comma means the header was sent twice and folded into one value.
  if (header.includes(',')) throw new UnauthenticatedError();
  const match = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/i.exec(header.trim());
  if (!match) throw new UnauthenticatedError();
  const token = match[1] as string;
  if (token.length > MAX_TOKEN_BYTES) throw new UnauthenticatedError();
  return token;
}
