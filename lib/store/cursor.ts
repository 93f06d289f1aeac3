import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { encodeFields } from '../crypto/canonical.js';
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

/** What a cursor handed to a client is bound to: the listing that made it and who asked. */
export interface CursorBinding {
  readonly prefix: string;
  readonly delimiter?: string;
  /** The caller, as `type:id` of its principal. */
  readonly caller: string;
}

const CURSOR_MAC_DOMAIN = 'coffer/list-cursor/v1';
/** HKDF `info` for the cursor key: a label no other use of the same key material takes. */
const CURSOR_KEY_INFO = 'coffer/list-cursor-key/v1';
/** 128 bits: a forger must guess it online, one request per guess. */
const MAC_BYTES = 16;

/**
 * The cursor MAC key, derived with HKDF-SHA256 from key material the host already holds (the audit
 * field-HMAC key) under a label of its own, so the two uses never share a key. The table never
 * holds it: a table writer cannot mint a cursor.
 */
export function deriveCursorKey(material: Uint8Array): Buffer {
  if (material.length < 32) throw new RangeError('cursor key material must be at least 32 bytes');
  return Buffer.from(hkdfSync('sha256', material, Buffer.alloc(0), CURSOR_KEY_INFO, 32));
}

/**
 * Seals the store's cursor for a client and opens it when it comes back. A sealed cursor is
 * `<store cursor>.<MAC>`, the MAC over the store cursor and its binding (prefix, delimiter,
 * caller). Reused with another prefix or delimiter, sent by another caller, edited or made by
 * hand, it fails the MAC and is 400 `invalid_cursor`; it never reaches DynamoDB, where a sort key
 * outside the listing's range is a ValidationException.
 */
export class CursorSealer {
  private readonly key: Buffer;

  constructor(key: Uint8Array) {
    if (key.length < 32) throw new RangeError('the cursor key must be at least 32 bytes');
    this.key = Buffer.from(key);
  }

  seal(storeCursor: string, binding: CursorBinding): string {
    return `${storeCursor}.${this.mac(storeCursor, binding).toString('base64url')}`;
  }

  /** The store cursor inside `raw`, if `raw` was sealed for this binding; else InvalidCursorError. */
  open(raw: string, binding: CursorBinding): string {
    const parts = raw.split('.');
    const [inner, tag] = parts;
    if (parts.length !== 2 || !inner || !tag || !/^[A-Za-z0-9_-]+$/.test(tag)) {
      throw new InvalidCursorError('invalid cursor');
    }
    // The tag is compared as the text this sealer writes, not as decoded bytes: base64url's last
    // character carries bits that decoding drops, so a tag edited there decodes to the same MAC.
    // One exact spelling per cursor keeps a cursor unforgeable down to its last character.
    const given = Buffer.from(tag, 'latin1');
    const want = Buffer.from(this.mac(inner, binding).toString('base64url'), 'latin1');
    if (given.length !== want.length || !timingSafeEqual(given, want)) {
      throw new InvalidCursorError('invalid cursor');
    }
    return inner;
  }

  private mac(storeCursor: string, binding: CursorBinding): Buffer {
    return createHmac('sha256', this.key)
      .update(
        encodeFields(CURSOR_MAC_DOMAIN, [
          binding.caller,
          binding.prefix,
          binding.delimiter ?? '',
          storeCursor,
        ]),
      )
      .digest()
      .subarray(0, MAC_BYTES);
  }
}
