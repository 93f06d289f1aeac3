import { createHash, timingSafeEqual } from 'node:crypto';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { encodeItem } from '../crypto/canonical.js';
import type { SealedValue } from '../crypto/envelope.js';
import type { StoredItem } from './head-mac.js';
import { versionFromItem, versionToItem } from './item-codec.js';
import { currentKey } from './keys.js';
import type { CurrentRef, SecretHead, StoredVersion } from './records.js';

/*
 * The current item (keys.ts) is a copy of a version item, so a plain read gets the head and the
 * value in one BatchGetItem. The copy itself carries no MAC: the head does, and it names the
 * copy's version and the SHA-256 of the copy's canonical encoding (`cv`, `cd`). A read uses the
 * copy only when the verified head's current version is the one asked for, names a copy of it,
 * and the copy hashes to the head's digest; anything else (no copy, an older copy, a copy of
 * another path or version, a copy edited or put back by a table writer, a copy written by a
 * transaction the head read did not see yet) falls back to the version item, as every read did
 * before. A deleted head is refused before the copy is looked at, and destroying or superseding
 * the current version changes the head's digest (or removes it) in the same transaction.
 *
 * The digest covers every attribute but the key, the item kind and the wrapped data key with its
 * key ids: those may change under the re-wrap job without the head being rewritten, and a wrapped
 * key only opens under the encryption context of this path and version, which yields this
 * version's data key or nothing, while the ciphertext, IV and algorithm it must then open are
 * covered. (The value's AES-GCM AAD binds path, version and type as well.)
 */

export const CURRENT_COPY_DOMAIN = 'coffer/current-copy/v1';

/** Attributes of a current item the digest does not cover (see above for why each). */
export const UNDIGESTED_COPY_ATTRIBUTES: ReadonlySet<string> = new Set([
  'pk',
  'sk',
  'type',
  'wk',
  'kp',
  'kid',
]);

/** The current item for a version: the version item under the current item's key. */
export function currentCopyItem(path: string, version: StoredVersion & { sealed: SealedValue }): StoredItem {
  return marshall(
    { ...versionToItem(path, version), ...currentKey(path), type: 'current' },
    { removeUndefinedValues: true },
  );
}

export function copyDigest(binding: string, item: StoredItem): Buffer {
  return createHash('sha256')
    .update(encodeItem(CURRENT_COPY_DOMAIN, [binding], item, UNDIGESTED_COPY_ATTRIBUTES))
    .digest();
}

/** What a head says of the copy of `version`, and the item to write for it. */
export function currentCopyOf(
  binding: string,
  path: string,
  version: StoredVersion & { sealed: SealedValue },
): { ref: CurrentRef; item: StoredItem } {
  const item = currentCopyItem(path, version);
  return { ref: { version: version.version, digest: copyDigest(binding, item) }, item };
}

/** The version a head's `current` label names (a head without labels: its latest). */
export const currentVersionOf = (head: SecretHead): number => head.labels?.current ?? head.latest;

/**
 * The head as it is written: its copy reference is kept only while it names the current version
 * (a promotion or a revert that moves `current` without a new copy drops it).
 */
export function withValidCurrent(head: SecretHead): SecretHead {
  if (!head.current || head.current.version === currentVersionOf(head)) return head;
  const { current: _stale, ...rest } = head;
  return rest;
}

/**
 * The version `wanted` from a stored copy, or undefined when the copy may not be used for it
 * (the caller then reads the version item). `head` is verified; `raw` is the item as read.
 */
export function versionFromCopy(
  binding: string,
  head: SecretHead,
  raw: StoredItem | undefined,
  wanted: number,
): StoredVersion | undefined {
  const ref = head.current;
  if (!raw || !ref || ref.version !== wanted || currentVersionOf(head) !== wanted) return undefined;
  const digest = copyDigest(binding, raw);
  if (digest.length !== ref.digest.length || !timingSafeEqual(digest, ref.digest)) return undefined;
  const item = unmarshall(raw);
  if (item.path !== head.path || item.version !== wanted) return undefined;
  return versionFromItem(item);
}
