import type {
  CertificateInfo,
  KeypairInfo,
  RotatorInfo,
  RotatorStep,
  SecretType,
} from '../../packages/client/src/contract.js';
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
  /**
   * Staging labels: which version is `current` (what a plain read returns), `previous` and
   * `pending` (a rotation's new version, not yet current). Absent (a head written before labels):
   * `current` is `latest` and there is no other label. Under the head's MAC.
   */
  readonly labels?: StageLabels;
  /** The rotation policy and the state of the last rotation (no secret material). */
  readonly rotation?: RotationState;
  /**
   * A request to replace the value by hand (offboarding marks a secret it cannot rotate itself):
   * listed as overdue until a new version becomes current. Under the head's MAC.
   */
  readonly rotationRequested?: RotationRequest;
  /**
   * The current item the head vouches for (keys.ts): which version it copies and the digest of
   * its content. Absent (a head written before current items, or one whose current version has
   * no copy): a read takes the version item. Under the head's MAC.
   */
  readonly current?: CurrentRef;
}

/** Why and since when a secret without a rotation policy waits for a new value. */
export interface RotationRequest {
  readonly at: string;
  readonly reason: string;
}

/** What a head says of its current item. */
export interface CurrentRef {
  readonly version: number;
  /** SHA-256 of the copy's canonical encoding (current-copy.ts). */
  readonly digest: Uint8Array;
}

export const STAGES = ['current', 'previous', 'pending'] as const;
export type Stage = (typeof STAGES)[number];

export interface StageLabels {
  readonly current: number;
  readonly previous?: number;
  readonly pending?: number;
}

/** A rotation policy with the built-in generator, and what the last rotation left behind. */
export interface RotationState {
  /** How often the secret is rotated, in seconds. */
  readonly everySeconds: number;
  /** When the next rotation is due (ISO 8601); the due index holds an entry for this time. */
  readonly nextAt: string;
  readonly lastRotatedAt?: string;
  /** Certificates: renewed this long before notAfter (lib/secrets/renewal.ts); default 30 days. */
  readonly renewBeforeSeconds?: number;
  /** The last failed rotation step: a fixed message (never a value), its time, the rotator's step. */
  readonly lastError?: { readonly message: string; readonly at: string; readonly step?: RotatorStep };
  /** The external rotator that sets and tests each new value in its target (Cedar `admin` to name). */
  readonly rotator?: RotatorInfo;
  /**
   * An external rotation under way: the step the pending `version` is at (the next one to run)
   * and whether it failed. Counts only while `version` is the pending label; a finished rotation
   * drops it.
   */
  readonly progress?: {
    readonly version: number;
    readonly step: RotatorStep;
    readonly failed?: boolean;
  };
  /** What the pending version's type says of it, moved to `typeInfo` when it becomes current. */
  readonly pendingTypeInfo?: TypeInfo;
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
