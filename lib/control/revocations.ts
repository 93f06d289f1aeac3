import { createHash, randomBytes } from 'node:crypto';
import type { Principal, PrincipalType } from '../authn/principal.js';
import { canonicalJson } from '../crypto/canonical.js';
import { IntegrityError } from '../errors.js';

/*
 * The revocation list: one authenticated control record (`revocations/list`), written only through
 * the admin API. It is checked before Cedar on every request, so no permit can override it, and
 * a table writer cannot shorten it: a record that fails its MAC, goes back a generation or
 * disappears after it was seen fails the request closed (lib/control/plane.ts).
 */

export const REVOCATION_KIND = 'revocations';
export const REVOCATION_ID = 'list';
/** Entries kept at most: the list is one DynamoDB item (≤ 400 KB) read on every refresh. */
export const MAX_REVOCATIONS = 1000;

/** Who an entry revokes: a principal (any type when `type` is left out), or a group's members. */
export type RevocationTarget =
  | { readonly principal: { readonly type?: PrincipalType; readonly id: string }; readonly group?: never }
  | { readonly group: string; readonly principal?: never };

export type RevocationEntry = RevocationTarget & {
  /** `r-` and 8 hex digits, for `coffer revocations rm`. */
  readonly id: string;
  readonly reason?: string;
  /** ISO time after which the entry no longer applies. Default: until removed. */
  readonly until?: string;
  /**
   * ISO time: only credentials issued before it (a token's `iat`, a certificate's notBefore) are
   * refused; a credential without an issue time is refused too (fail closed).
   */
  readonly tokensIssuedBefore?: string;
  /** The admin who added it (`Type::"id"`), and when. */
  readonly by: string;
  readonly at: string;
};

export interface RevocationList {
  readonly entries: readonly RevocationEntry[];
}

export const EMPTY_REVOCATIONS: RevocationList = Object.freeze({ entries: [] });

export const newRevocationId = (): string => `r-${randomBytes(4).toString('hex')}`;

/** How the list is named in audit records: the SHA-256 of its canonical JSON. */
export function revocationListHash(list: RevocationList): string {
  return createHash('sha256').update(canonicalJson(list)).digest('hex');
}

/** `User::"corp:alice"`, `group admins`, for audit records and the CLI. */
export function describeTarget(entry: RevocationTarget): string {
  if (entry.group !== undefined) return `group ${entry.group}`;
  const p = entry.principal;
  return p.type ? `${p.type}::${JSON.stringify(p.id)}` : `any principal ${JSON.stringify(p.id)}`;
}

/** Whether an entry still applies at `nowMs`. */
export const isLive = (entry: RevocationEntry, nowMs: number): boolean =>
  entry.until === undefined || Date.parse(entry.until) > nowMs;

/**
 * The first live entry that refuses this principal, or undefined. An entry with
 * `tokensIssuedBefore` refuses a credential issued before the cutoff, and one whose issue time is
 * unknown: it cannot prove it is the fresh one.
 */
export function revocationFor(
  list: RevocationList,
  principal: Principal,
  nowMs: number,
): RevocationEntry | undefined {
  for (const entry of list.entries) {
    if (!isLive(entry, nowMs)) continue;
    const target =
      entry.group !== undefined
        ? principal.groups.includes(entry.group)
        : entry.principal.id === principal.id &&
          (entry.principal.type === undefined || entry.principal.type === principal.type);
    if (!target) continue;
    if (entry.tokensIssuedBefore !== undefined) {
      const cutoff = Date.parse(entry.tokensIssuedBefore) / 1000;
      if (principal.issuedAt !== undefined && principal.issuedAt >= cutoff) continue;
    }
    return entry;
  }
  return undefined;
}

const TYPES: ReadonlySet<string> = new Set(['User', 'Role', 'Workload']);
const isIso = (v: unknown): v is string => typeof v === 'string' && !Number.isNaN(Date.parse(v));

/**
 * Checks a stored list's shape. It passed its MAC, so only our own writer made it; a shape we do
 * not understand (a newer writer's?) still fails closed rather than being read as "no entries".
 */
export function checkRevocationList(payload: unknown): RevocationList {
  const entries = (payload as { entries?: unknown } | null)?.entries;
  if (!Array.isArray(entries)) throw new IntegrityError();
  for (const e of entries as Record<string, unknown>[]) {
    if (typeof e !== 'object' || e === null || typeof e.id !== 'string') throw new IntegrityError();
    const principal = e.principal as { type?: unknown; id?: unknown } | undefined;
    const byPrincipal =
      principal !== undefined &&
      typeof principal.id === 'string' &&
      (principal.type === undefined || TYPES.has(String(principal.type)));
    const byGroup = typeof e.group === 'string';
    if (byPrincipal === byGroup) throw new IntegrityError();
    if (e.until !== undefined && !isIso(e.until)) throw new IntegrityError();
    if (e.tokensIssuedBefore !== undefined && !isIso(e.tokensIssuedBefore)) throw new IntegrityError();
  }
  return payload as RevocationList;
}
