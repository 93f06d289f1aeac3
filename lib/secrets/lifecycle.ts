import type { LifecycleItem } from '../../packages/client/src/contract.js';
import { InvalidCursorError } from '../store/cursor.js';
import type { SecretHead } from '../store/records.js';
import { currentOf } from './stages.js';

/*
 * Lifecycle listings and counts (docs/rotation.md, "Overdue rotations and expiring
 * certificates"): pages of the due index (`ROT`) and the expiry index (`EXP`), each entry checked
 * against the secret's verified head. An entry counts only when the head it names agrees with it
 * (the same nextAt, the same notAfter), so a stale entry, or one a table writer added, shows
 * nothing, and no secret appears twice across the pages of one listing.
 */

/**
 * Namespace of the metrics the scheduled rotation job publishes (lib/secrets/lifecycle-metrics.ts;
 * the stack's alarms read them). Kept here, free of SDK imports, for the CDK app.
 */
export const LIFECYCLE_METRIC_NAMESPACE = 'Coffer/Lifecycle';

export type LifecycleQuery = { kind: 'rotation-overdue' } | { kind: 'expiring'; withinSeconds: number };

/** The index a listing pages through, and the time its entries must be at or before. */
export function lifecycleBound(
  query: LifecycleQuery,
  now: Date,
): { index: 'rotation' | 'expiry'; boundIso: string } {
  return query.kind === 'rotation-overdue'
    ? { index: 'rotation', boundIso: now.toISOString() }
    : { index: 'expiry', boundIso: new Date(now.getTime() + query.withinSeconds * 1000).toISOString() };
}

/**
 * What a listing shows of a secret for one index entry, or undefined when the verified head does
 * not stand behind the entry (deleted, policy cleared or moved, certificate replaced).
 */
export function lifecycleItemOf(
  head: SecretHead | undefined,
  query: LifecycleQuery,
  entryAt: string,
  boundIso: string,
): LifecycleItem | undefined {
  if (!head || head.deletedAt) return undefined;
  const base = { path: head.path, version: currentOf(head), updatedAt: head.updatedAt };
  if (query.kind === 'rotation-overdue') {
    const rotation = head.rotation;
    if (!rotation || rotation.nextAt !== entryAt || rotation.nextAt > boundIso) return undefined;
    return {
      ...base,
      nextAt: rotation.nextAt,
      ...(rotation.lastError ? { lastRotationError: { ...rotation.lastError } } : {}),
    };
  }
  const notAfter = head.typeInfo?.certificate?.notAfter;
  if (!notAfter || notAfter !== entryAt || notAfter > boundIso) return undefined;
  return { ...base, notAfter };
}

/**
 * The store cursor of a listing as a client carries it inside a sealed cursor: the index sort key
 * (a time, `#`, a path: it holds `.`, which the sealed form uses as its separator) in base64url.
 */
export function encodeIndexCursor(sk: string): string {
  return Buffer.from(sk, 'utf8').toString('base64url');
}

export function decodeIndexCursor(inner: string): string {
  const sk = Buffer.from(inner, 'base64url').toString('utf8');
  // Only what encodeIndexCursor makes (the MAC has vouched for it already; this keeps it exact).
  if (!sk.includes('#') || encodeIndexCursor(sk) !== inner) throw new InvalidCursorError('invalid cursor');
  return sk;
}
