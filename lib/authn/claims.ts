import type { JWTPayload } from 'jose';
import type { ClaimPath, IssuerConfig } from '../config-file.js';
import type { Principal } from './principal.js';

/** The longest id or attribute value taken from a token. */
const MAX_CLAIM_CHARS = 256;
const MAX_GROUP_VALUES = 200;
// Control characters would let an id forge lines in logs or confuse policy authors.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to match them
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Thrown when a verified token lacks a usable id claim; the authenticator turns it into 401. */
export class UnusableClaimsError extends Error {
  override readonly name = 'UnusableClaimsError';
}

/** Reads a claim by name, or by a path of names into nested objects. */
export function readClaim(payload: JWTPayload, path: ClaimPath): unknown {
  if (typeof path === 'string') return Object.hasOwn(payload, path) ? payload[path] : undefined;
  let value: unknown = payload;
  for (const key of path) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, key)) {
      return undefined;
    }
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

const usableString = (v: unknown): v is string =>
  typeof v === 'string' && v.length > 0 && v.length <= MAX_CLAIM_CHARS && !CONTROL.test(v);

/**
 * Coffer groups for a token: each IdP group value is looked up in the issuer's mapping; values
 * without an entry give nothing. So an IdP that says `admins` makes nobody a Coffer admin unless
 * the operator mapped that issuer's `admins` to it.
 */
export function mapGroups(claim: unknown, mapping: IssuerConfig['groupMapping']): string[] {
  const values =
    typeof claim === 'string' ? [claim] : Array.isArray(claim) ? claim.slice(0, MAX_GROUP_VALUES) : [];
  const groups = new Set<string>();
  for (const value of values) {
    if (typeof value !== 'string' || !Object.hasOwn(mapping, value)) continue;
    for (const g of mapping[value] ?? []) groups.add(g);
  }
  return [...groups].sort();
}

/** Configured attributes whose claims hold a string, number or boolean; others are left out. */
export function mapAttributes(
  payload: JWTPayload,
  attributes: IssuerConfig['claims']['attributes'],
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, path] of Object.entries(attributes)) {
    const value = readClaim(payload, path);
    const text = typeof value === 'number' || typeof value === 'boolean' ? String(value) : value;
    if (usableString(text)) out[name] = text;
  }
  return out;
}

/** The principal for a verified token of an OIDC issuer. */
export function principalFromClaims(
  issuer: Pick<IssuerConfig, 'alias' | 'claims' | 'groupMapping'>,
  payload: JWTPayload,
): Principal {
  const id = readClaim(payload, issuer.claims.id);
  if (!usableString(id)) throw new UnusableClaimsError('id claim missing or unusable');
  return {
    type: 'User',
    id: `${issuer.alias}:${id}`,
    groups: mapGroups(readClaim(payload, issuer.claims.groups), issuer.groupMapping),
    attributes: mapAttributes(payload, issuer.claims.attributes),
    authMethod: 'oidc',
    issuer: issuer.alias,
  };
}

export { usableString as isUsableClaimString };
