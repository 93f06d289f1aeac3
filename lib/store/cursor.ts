import { InvalidRequestError } from '../errors.js';
import { firstSegment, HIGH, headSortKey, isHeadSortKey } from './keys.js';
import type { ListEntry } from './records.js';

/** Where a listing resumes. Opaque to callers: base64url JSON that only this store reads. */
export interface ListCursor {
  /** The first segment being read when the page ended (only for root-level prefixes). */
  r?: string;
  /** The last head sort key returned or skipped. */
  k: string;
}

/** Thrown for a cursor this store did not make. */
export class InvalidCursorError extends InvalidRequestError {
  static override readonly code = 'invalid_cursor';
}

export function encodeCursor(cursor: ListCursor): string {
  return Buffer.from(JSON.stringify(cursor)).toString('base64url');
}

export function decodeCursor(raw: string | undefined): ListCursor | undefined {
  if (!raw) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidCursorError('invalid cursor');
  }
  const c = parsed as Partial<ListCursor> | null;
  if (
    typeof c !== 'object' ||
    c === null ||
    typeof c.k !== 'string' ||
    (c.k !== '' && !isHeadSortKey(c.k)) ||
    (c.r !== undefined && typeof c.r !== 'string')
  ) {
    throw new InvalidCursorError('invalid cursor');
  }
  return c.r === undefined ? { k: c.k } : { k: c.k, r: c.r };
}

/**
 * A cursor that resumes a listing of `prefix` (with the same delimiter) right after `entry`, an
 * entry that listing returned. It names only that entry: a caller that filters pages can hand
 * it out without revealing the entries it filtered away.
 */
export function cursorAfter(prefix: string, entry: ListEntry): string {
  const path = entry.kind === 'head' ? entry.head.path : entry.path;
  // After a folder, resume past everything under it, as the walk itself does.
  const k = entry.kind === 'head' ? headSortKey(path) : headSortKey(`${path}${HIGH}`);
  return encodeCursor(prefix.includes('/') ? { k } : { r: firstSegment(path), k });
}
