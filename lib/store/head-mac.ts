import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { encodeItem } from '../crypto/canonical.js';
import { IntegrityError } from '../errors.js';
import { requireMac, type StorageMacKey } from '../keys/storage-mac.js';

/*
 * Authenticated heads. A head drives decisions (its tags, owner and deletion state go to Cedar),
 * so a writer of the secrets table who holds no Coffer key must not be able to change it. Each
 * head item carries `mac` = HMAC-SHA256(storage key `mk`, encodeItem('coffer/head-mac/v1',
 * [binding], every attribute but the unauthenticated ones)). The binding names the installation,
 * and pk/sk/path are covered, so a head copied to another path or another installation fails.
 * Coverage is by exclusion: an attribute added later is authenticated without anyone listing it.
 */

export const HEAD_MAC_DOMAIN = 'coffer/head-mac/v1';

/**
 * Attributes of a head item its MAC does not cover: only the MAC itself, which cannot cover
 * itself. (`mk`, the MAC key id, is covered: changing it can only make verification fail.)
 */
export const UNAUTHENTICATED_HEAD_ATTRIBUTES: ReadonlySet<string> = new Set(['mac']);

/**
 * The attributes a head item has today, every one covered by the MAC. Listed for the docs and for
 * the test that fails when a head attribute is in neither list; coverage does not depend on it.
 */
export const AUTHENTICATED_HEAD_ATTRIBUTES: readonly string[] = [
  'pk',
  'sk',
  'type',
  'path',
  'latest',
  'minVersion',
  'createdAt',
  'updatedAt',
  'description',
  'tags',
  'maxVersions',
  'owner',
  'deletedAt',
  'purgeAt',
  /** The latest version's secret type (`type` is the item's kind, `head`). Absent: `text`. */
  'secretType',
  /** What the type says of the latest value (public key, certificate names and validity). */
  'typeInfo',
  /** The head's revision: rises by one with every write of the head, never falls. */
  'rev',
  /** The id of the storage MAC key the MAC was made with. */
  'mk',
  /** The value's type (`password`, `keypair`, `certificate`…); absent: text. */
  'secretType',
  /** A generated secret's generator parameters, JSON text (no secret material). */
  'generator',
  /** Staging labels (current, previous, pending versions), JSON text. */
  'labels',
  /** The rotation policy and last rotation's state, JSON text (no secret material). */
  'rotation',
  /** A request to replace the value by hand (offboarding), JSON text: when and why. */
  'rotationRequested',
  /** The version the current item copies (keys.ts). */
  'cv',
  /** The SHA-256 digest of that copy's content: a copy that differs is not used. */
  'cd',
];

export type StoredItem = Record<string, AttributeValue>;

/** What a store needs to authenticate heads: the key, and the installation they belong to. */
export interface HeadIntegrity {
  readonly key: StorageMacKey;
  /** The stable installation id (the same binding as the values' AAD). */
  readonly binding: string;
}

function headBytes(integrity: HeadIntegrity, item: StoredItem): Buffer {
  return encodeItem(HEAD_MAC_DOMAIN, [integrity.binding], item, UNAUTHENTICATED_HEAD_ATTRIBUTES);
}

/** The head item with `mk` and `mac` set under the current key. */
export function sealHeadItem(integrity: HeadIntegrity, item: StoredItem): StoredItem {
  const { mac: _stale, ...rest } = item;
  const keyed: StoredItem = { ...rest, mk: { S: integrity.key.keyId } };
  return { ...keyed, mac: { B: integrity.key.mac(headBytes(integrity, keyed)) } };
}

/** Whether a stored head carries a MAC at all (heads written before MACs did not). */
export function hasHeadMac(item: StoredItem): boolean {
  return item.mac !== undefined;
}

/** Throws IntegrityError unless the stored head's MAC verifies: missing, altered or moved alike. */
export function verifyHeadItem(integrity: HeadIntegrity, item: StoredItem): void {
  if (item.mac?.B === undefined || item.mk?.S === undefined) throw new IntegrityError();
  requireMac(integrity.key, item.mk.S, headBytes(integrity, item), item.mac.B);
}
