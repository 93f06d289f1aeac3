import type { JWTPayload } from 'jose';
import type { BoundClaim, IssuerConfig, UserMappingConfig, WorkloadMappingConfig } from '../config-file.js';
import { AuthRefusal } from './bearer.js';
import { isUsableClaimString, mapAttributes, principalFromClaims, readClaim } from './claims.js';
import type { Principal } from './principal.js';
import { escapeIdValue } from './workload-id.js';

/** The longest workload id (a template of up to 256 characters, each claim value up to 256). */
const MAX_ID_CHARS = 2048;
/** Array claims longer than this are looked at only so far (a bound holds if any element matches). */
const MAX_ARRAY_VALUES = 100;

/** A claim value as text for comparison: strings, finite numbers and booleans; nothing else. */
function scalarText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if ((typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean')
    return String(value);
  return undefined;
}

const globs = new Map<string, RegExp>();

/** `*` stands for any run of characters (`/` included); everything else is literal; anchored. */
export function globMatches(pattern: string, text: string): boolean {
  let re = globs.get(pattern);
  if (!re) {
    const body = pattern
      .split('*')
      .map((piece) => piece.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('[\\s\\S]*');
    re = new RegExp(`^${body}$`, 'u');
    globs.set(pattern, re);
  }
  return re.test(text);
}

/** Whether one bound claim holds for the token's value (an array holds if any element does). */
export function boundHolds(bound: BoundClaim, value: unknown): boolean {
  if (bound.absent) return value === undefined || value === null;
  const values = Array.isArray(value) ? value.slice(0, MAX_ARRAY_VALUES) : [value];
  return values.some((v) => {
    const text = scalarText(v);
    return text !== undefined && (bound.exact.includes(text) || bound.glob.some((g) => globMatches(g, text)));
  });
}

/** The first condition of a mapping the token does not meet (`aud` or a claim name), or undefined. */
function mismatch(
  mapping: UserMappingConfig | WorkloadMappingConfig,
  payload: JWTPayload,
): string | undefined {
  if (mapping.audiences) {
    const aud = payload.aud;
    const list = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
    if (!list.some((a) => (mapping.audiences as readonly string[]).includes(a))) return 'aud';
  }
  for (const bound of mapping.bound) {
    if (!boundHolds(bound, readClaim(payload, bound.path))) return bound.name;
  }
  return undefined;
}

/**
 * The workload principal of a token that matched `mapping`: the id template with each claim value
 * escaped (workload-id.ts), the configured claims as tags, the mapping's groups.
 */
export function workloadPrincipal(
  alias: string,
  mapping: WorkloadMappingConfig,
  payload: JWTPayload,
): Principal {
  let id = '';
  for (const part of mapping.idParts) {
    if ('text' in part) {
      id += part.text;
      continue;
    }
    const value = scalarText(readClaim(payload, part.path));
    // An empty or missing value would make ids like `gha::` that many tokens share.
    if (!isUsableClaimString(value)) {
      throw new AuthRefusal('unusable_id_claim', { mapping: mapping.name, claim: part.claim });
    }
    id += escapeIdValue(value);
  }
  if (id.length > MAX_ID_CHARS) throw new AuthRefusal('unusable_id_claim', { mapping: mapping.name });
  return {
    type: 'Workload',
    id,
    groups: mapping.groups,
    attributes: mapAttributes(payload, mapping.tags),
    authMethod: 'oidc',
    issuer: alias,
    kind: 'oidc',
  };
}

/**
 * The principal for a verified token of an issuer, through its mappings (docs/workload-identity.md):
 * - an issuer without workload mappings maps every token to a person (`User`), as before; if it has
 *   `users` bound claims, they must hold;
 * - an issuer with workload mappings counts each of them, plus `users` when configured, as one
 *   mapping; the token must match exactly one. None or several is a refusal (the same 401 as any
 *   other), logged with the mapping names and, for "none", the first condition each one failed.
 */
export function principalFromToken(issuer: IssuerConfig, payload: JWTPayload): Principal {
  const workloads = issuer.workloads ?? [];
  const users = issuer.users;
  const matched: (WorkloadMappingConfig | 'users')[] = [];
  const misses: string[] = [];
  for (const mapping of workloads) {
    const miss = mismatch(mapping, payload);
    if (miss === undefined) matched.push(mapping);
    else misses.push(`${mapping.name}:${miss}`);
  }
  if (users) {
    const miss = mismatch(users, payload);
    if (miss === undefined) matched.push('users');
    else misses.push(`users:${miss}`);
  } else if (workloads.length === 0) {
    matched.push('users');
  }
  const names = (list: typeof matched) => list.map((m) => (m === 'users' ? 'users' : m.name)).join(' ');
  if (matched.length === 0) throw new AuthRefusal('no_matching_mapping', { mappings: misses.join(' ') });
  if (matched.length > 1) throw new AuthRefusal('several_matching_mappings', { mappings: names(matched) });
  const only = matched[0] as WorkloadMappingConfig | 'users';
  return only === 'users'
    ? principalFromClaims(issuer, payload)
    : workloadPrincipal(issuer.alias, only, payload);
}
