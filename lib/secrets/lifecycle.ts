import type { LifecycleItem } from '../../packages/client/src/contract.js';
import { InvalidCursorError } from '../store/cursor.js';
import type { SecretHead } from '../store/records.js';
import { currentOf } from './stages.js';

/*
 * Lifecycle listings and counts (docs/rotation.md, "Overdue rotations and expiring
 * certificates"): pages of the due index (`ROT`), the request index (`ROTREQ`) and the expiry
 * index (`EXP`), each entry checked
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

/** An index the lifecycle listings page through (lib/store/keys.ts). */
export type LifecycleIndex = 'rotation' | 'requested' | 'expiry';

/**
 * The indexes a listing pages through, in order, and the time its entries must be at or before:
 * overdue rotations, then secrets waiting to be replaced by hand (offboarding's requests); or the
 * certificates expiring within the window.
 */
export function lifecycleBound(
  query: LifecycleQuery,
  now: Date,
): { indexes: readonly LifecycleIndex[]; boundIso: string } {
  return query.kind === 'rotation-overdue'
    ? { indexes: ['rotation', 'requested'], boundIso: now.toISOString() }
    : {
        indexes: ['expiry'],
        boundIso: new Date(now.getTime() + query.withinSeconds * 1000).toISOString(),
      };
}

/**
 * What a listing shows of a secret for one index entry, or undefined when the verified head does
 * not stand behind the entry (deleted, policy cleared or moved, certificate replaced, request
 * answered). A secret both overdue and requested shows once, from the due index.
 */
export function lifecycleItemOf(
  head: SecretHead | undefined,
  index: LifecycleIndex,
  entryAt: string,
  boundIso: string,
): LifecycleItem | undefined {
  if (!head || head.deletedAt) return undefined;
  const base = { path: head.path, version: currentOf(head), updatedAt: head.updatedAt };
  const requested = head.rotationRequested;
  const requestInfo = requested ? { rotationRequested: { ...requested } } : {};
  const rotation = head.rotation;
  const overdue = rotation !== undefined && rotation.nextAt <= boundIso;
  switch (index) {
    case 'rotation':
      if (!rotation || rotation.nextAt !== entryAt || !overdue) return undefined;
      return {
        ...base,
        nextAt: rotation.nextAt,
        ...(rotation.lastError ? { lastRotationError: { ...rotation.lastError } } : {}),
        ...requestInfo,
      };
    case 'requested':
      if (!requested || requested.at !== entryAt || overdue) return undefined;
      return { ...base, ...requestInfo };
    case 'expiry': {
      const notAfter = head.typeInfo?.certificate?.notAfter;
      if (!notAfter || notAfter !== entryAt || notAfter > boundIso) return undefined;
      return { ...base, notAfter };
    }
  }
}

/**
 * Where a listing stopped, as a client carries it inside a sealed cursor: which of its indexes,
 * and that index's sort key (a time, `#`, a path: it holds `.`, which the sealed form uses as its
 * separator), in base64url.
 */
export function encodeIndexCursor(phase: number, sk: string): string {
  return Buffer.from(`${phase}:${sk}`, 'utf8').toString('base64url');
}

export function decodeIndexCursor(inner: string, phases: number): { phase: number; sk: string } {
  const text = Buffer.from(inner, 'base64url').toString('utf8');
  const m = /^([0-9]):(.*#.*)$/s.exec(text);
  const phase = Number(m?.[1]);
  // Only what encodeIndexCursor makes (the MAC has vouched for it already; this keeps it exact).
  if (!m || phase >= phases || encodeIndexCursor(phase, m[2] as string) !== inner) {
    throw new InvalidCursorError('invalid cursor');
  }
  return { phase, sk: m[2] as string };
}
