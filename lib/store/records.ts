import type { CertificateInfo, KeypairInfo, SecretType } from '../../packages/client/src/contract.js';
import type { SealedValue } from '../crypto/envelope.js';

/* The domain records the secrets store reads and writes (item-codec.ts maps them to items). */

/** What a write of a typed value adds to the head's metadata. Never holds a private key. */
export interface TypeInfo {
  readonly keypair?: KeypairInfo;
  readonly certificate?: CertificateInfo;
}

export interface SecretHead {
  readonly path: string;
  readonly latest: number;
  /** Versions below this were pruned (max versions) and no longer exist for readers. */
  readonly minVersion: number;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly description?: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly maxVersions: number;
  /** Principal id of the creator. */
  readonly owner?: string;
  readonly deletedAt?: string;
  readonly purgeAt?: string;
  /** The type of the latest version; absent (a head written before types) means `text`. */
  readonly type?: SecretType;
  /**
   * What the latest version's type says about it (a keypair's public key, a certificate's names
   * and validity), derived when it was written. Never a private key.
   */
  readonly typeInfo?: TypeInfo;
  /**
   * The head's revision: every write of the head raises it by one (the store sets it), and it is
   * under the head's MAC, so the audit log can name the exact head each change left behind.
   */
  readonly rev?: number;
  /** A generated secret's generator parameters (no secret material): what rotation makes again. */
  readonly generator?: Readonly<Record<string, unknown>>;
}

export interface VersionMeta {
  readonly path: string;
  readonly version: number;
  readonly createdAt: string;
  readonly createdBy?: string;
  readonly destroyed: boolean;
  readonly keyProvider?: string;
  readonly keyId?: string;
  /** The version's type; absent (a version written before types) means `text`. */
  readonly valueType?: SecretType;
}

export interface StoredVersion extends VersionMeta {
  /** Absent when the version was destroyed. */
  readonly sealed?: SealedValue;
}

export interface IdempotencyRecord {
  readonly fingerprint: string;
  readonly result: Record<string, unknown>;
}

export interface IdempotencyClaim {
  readonly scope: string;
  readonly fingerprint: string;
  readonly result: Record<string, unknown>;
  /** Epoch seconds after which the claim is forgotten. */
  readonly expiresAt: number;
}

/** One entry of a list page: a secret's head, or a folder (with a delimiter). */
export type ListEntry =
  | { readonly kind: 'head'; readonly head: SecretHead }
  | { readonly kind: 'folder'; readonly path: string };

export interface ListPage {
  /** Heads and folders, in the order they were found (the order cursors follow). */
  readonly entries: ListEntry[];
  readonly cursor?: string;
}
