import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { encodeFields } from '../crypto/canonical.js';
import { CofferError, IntegrityError } from '../errors.js';
import { type ControlRecord, ControlRecordConflict, type ControlRecords } from '../store/control-records.js';
import { firstSegment } from '../store/keys.js';
import { type CacheStats, DEFAULT_KEY_CACHE, KeyCache, type KeyCacheSettings } from './key-cache.js';
import type { DataKey, EncryptionContext, KeyProvider, WrappedKey } from './provider.js';
import type { RootKeys } from './root-keys.js';

/*
 * The key hierarchy (docs/keys.md):
 *
 *   root key (KMS key, possibly in a CloudHSM key store; or the local ring)
 *     └─ branch key, one versioned set per top-level folder, wrapped by the root
 *          └─ data key, one per secret version, AES-256-GCM-wrapped by the folder's active branch
 *             key with the version's binding (table/installation, path, version) as AAD
 *
 * A folder's branch keys live in one authenticated control record, its keyring (kind `keyring`,
 * id `f` + a hash of the folder name): every version's wrapped material, its state, the active
 * version and the versions active before it. The record is MAC'd with the storage key and its
 * generation only rises, so a writer of the table can neither swap a branch key nor set the
 * active pointer back to an old version. The root wraps each branch key with an encryption
 * context naming installation, folder and version, so wrapped material moved between slots does
 * not open either.
 *
 * Unwrapped branch keys are cached (KeyCache): a warm read costs no root key operation at all.
 */

export const BRANCH_PROVIDER = 'branch';
export const KEYRING_KIND = 'keyring';
export const ROOT_KIND = 'root-key';
export const ROOT_ID = 'active';
export const FLUSH_KIND = 'key-flush';
export const FLUSH_ID = 'all';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const WRAPPED_BYTES = IV_BYTES + 32 + TAG_BYTES;

export type BranchState = 'pending' | 'ready' | 'retired' | 'destroyed';

/** One branch key version as its keyring stores it. */
export interface BranchVersion {
  readonly v: number;
  readonly state: BranchState;
  /** The root key that wraps it. */
  readonly root: string;
  /** The branch key wrapped by `root` (base64); gone once destroyed. */
  readonly wrapped?: string;
  readonly createdAt: string;
  readonly retiredAt?: string;
  readonly destroyedAt?: string;
}

/** The payload of a folder's keyring control record. */
export interface Keyring {
  readonly folder: string;
  /** The version new data keys are wrapped under; 0 while none is active. */
  readonly active: number;
  /** Versions active before, oldest first (`keys revert` goes back to the last). */
  readonly history: readonly number[];
  readonly versions: readonly BranchVersion[];
}

/** The payload of the root control record. */
export interface RootPointer {
  readonly active: string;
  readonly history: readonly string[];
  /** Root key id → when it was retired. */
  readonly retired: Readonly<Record<string, string>>;
}

/** The id of a branch key version, as stored in each version item's `kid`. */
export const branchKeyId = (folder: string, v: number): string => `bk:${folder}:${v}`;

export function parseBranchKeyId(kid: string): { folder: string; v: number } | undefined {
  const m = /^bk:([A-Za-z0-9._-]{1,512}):([1-9]\d{0,8})$/.exec(kid);
  return m ? { folder: m[1] as string, v: Number(m[2]) } : undefined;
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/**
 * A folder's control record id: control ids are plain lower-case names, folder names are not, so
 * the id is `f` and 160 bits of SHA-256 of the name in base32. The keyring names its folder, which
 * is checked on every read.
 */
export function folderRecordId(folder: string): string {
  const digest = createHash('sha256').update('coffer/keyring-id/v1\0').update(folder).digest();
  let bits = 0;
  let value = 0;
  let out = 'f';
  for (const byte of digest.subarray(0, 20)) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out;
}

/** The root encryption context of a branch key: names it, holds nothing secret (it is in CloudTrail). */
export function branchContext(binding: string, folder: string, v: number): EncryptionContext {
  return {
    'coffer:table': binding,
    'coffer:purpose': 'branch-key',
    'coffer:folder': folder,
    'coffer:branch-version': String(v),
  };
}

function wrapAad(kid: string, context: EncryptionContext): Buffer {
  const entries = Object.entries(context).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return encodeFields('coffer/branch-wrap/v1', [kid, ...entries.flat()]);
}

/** AES-256-GCM wrap of a data key under a branch key, the version's binding as AAD. */
export function wrapDataKey(
  branchKey: Uint8Array,
  kid: string,
  plaintext: Uint8Array,
  context: EncryptionContext,
): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', branchKey, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(wrapAad(kid, context));
  return Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

export function unwrapDataKey(
  branchKey: Uint8Array,
  kid: string,
  wrapped: Uint8Array,
  context: EncryptionContext,
): Buffer {
  const bytes = Buffer.from(wrapped);
  if (bytes.length !== WRAPPED_BYTES) throw new IntegrityError();
  try {
    const decipher = createDecipheriv('aes-256-gcm', branchKey, bytes.subarray(0, IV_BYTES), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(wrapAad(kid, context));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    return Buffer.concat([
      decipher.update(bytes.subarray(IV_BYTES, bytes.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    throw new IntegrityError();
  }
}

/** A key operation was refused because of the key's state (active, still referenced, unknown). */
export class KeyStateError extends CofferError {
  static override readonly code = 'key_state_conflict';
}

/** Root key operations of this process since start (`coffer keys status`). */
export interface RootOpStats {
  generate: number;
  decrypt: number;
  reEncrypt: number;
}

export interface BranchKeysOptions {
  readonly root: RootKeys;
  readonly control: ControlRecords;
  /** The installation id (as for heads and values). */
  readonly binding: string;
  readonly cache?: KeyCacheSettings;
  /**
   * How often, at most, a request re-reads the flush record (`coffer keys flush`), in seconds.
   * Default: 30, or the cache's age bound when that is shorter. Checked on requests, never by timer.
   */
  readonly flushCheckSeconds?: number;
  /** Milliseconds since the epoch (tests). */
  readonly now?: () => number;
}

/** The context of a data key names its secret path; the folder is its first segment. */
function folderOf(context: EncryptionContext): string {
  const path = context['coffer:path'];
  if (typeof path !== 'string' || path === '') throw new IntegrityError();
  return firstSegment(path);
}

/**
 * The KeyProvider of the hierarchy: new data keys are wrapped by the folder's active branch key,
 * data keys are unwrapped by the branch key version their item names (or, for data written before
 * the hierarchy, by the root directly). Keep one instance per process: it holds the cache.
 */
export class BranchKeyProvider implements KeyProvider {
  readonly name = BRANCH_PROVIDER;
  readonly root: RootKeys;
  readonly cache: KeyCache;
  readonly rootOps: RootOpStats = { generate: 0, decrypt: 0, reEncrypt: 0 };
  private readonly control: ControlRecords;
  private readonly binding: string;
  private readonly now: () => number;
  private readonly flushCheckMs: number;
  private lastFlushCheck = Number.NEGATIVE_INFINITY;
  private flushGeneration = 0;

  constructor(options: BranchKeysOptions) {
    this.root = options.root;
    this.control = options.control;
    this.binding = options.binding;
    this.now = options.now ?? Date.now;
    const cache = options.cache ?? DEFAULT_KEY_CACHE;
    this.cache = new KeyCache(cache, this.now);
    const age = cache.maxAgeSeconds > 0 ? cache.maxAgeSeconds : 30;
    this.flushCheckMs = Math.min(options.flushCheckSeconds ?? 30, age) * 1000;
  }

  /** The provider's key id: the root new branch keys are made under by default. */
  get keyId(): string {
    return this.root.defaultKeyId;
  }

  get cacheStats(): CacheStats {
    return this.cache.stats;
  }

  async generateDataKey(context: EncryptionContext): Promise<DataKey> {
    const folder = folderOf(context);
    const { kid, key } = await this.activeBranch(folder);
    const plaintext = randomBytes(32);
    try {
      return { plaintext, wrapped: wrapDataKey(key, kid, plaintext, context), keyId: kid };
    } finally {
      key.fill(0);
    }
  }

  async decryptDataKey(wrapped: WrappedKey, context: EncryptionContext): Promise<Uint8Array> {
    const branch = parseBranchKeyId(wrapped.keyId);
    if (!branch) {
      // Written before the hierarchy: the root wrapped the data key itself.
      this.rootOps.decrypt += 1;
      return this.root.decrypt(wrapped, context);
    }
    if (branch.folder !== folderOf(context)) throw new IntegrityError();
    const key = await this.branchKey(branch.folder, branch.v);
    try {
      return unwrapDataKey(key, wrapped.keyId, wrapped.wrapped, context);
    } finally {
      key.fill(0);
    }
  }

  /**
   * Re-wraps a data key under its folder's active branch key. The data key is unwrapped in memory
   * for the moment it takes (never a secret value); a root-wrapped key costs one root operation.
   */
  async reEncrypt(wrapped: WrappedKey, context: EncryptionContext): Promise<WrappedKey> {
    const target = await this.activeBranch(folderOf(context));
    try {
      return await this.rewrapUnder(target, wrapped, context);
    } finally {
      target.key.fill(0);
    }
  }

  /** Re-wraps under a branch key the caller holds (the re-wrap job reads the target once per run). */
  async rewrapUnder(
    target: { readonly kid: string; readonly key: Uint8Array },
    wrapped: WrappedKey,
    context: EncryptionContext,
  ): Promise<WrappedKey> {
    const plaintext = Buffer.from(await this.decryptDataKey(wrapped, context));
    try {
      return { wrapped: wrapDataKey(target.key, target.kid, plaintext, context), keyId: target.kid };
    } finally {
      plaintext.fill(0);
    }
  }

  /**
   * The active branch key of a folder (a copy: zero it after use), creating the folder's first
   * version when it has none. The keyring is read on every call, so a rotation is used by every
   * instance's next write; the key itself comes from the cache when fresh.
   */
  async activeBranch(folder: string): Promise<{ kid: string; v: number; key: Buffer }> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const ring = await this.readKeyring(folder);
      const active = ring?.payload.versions.find((x) => x.v === ring.payload.active);
      if (ring && active) {
        const key = await this.keyOf(folder, active);
        return { kid: branchKeyId(folder, active.v), v: active.v, key };
      }
      try {
        await this.createVersion(folder, ring, { activate: true });
      } catch (err) {
        // Another instance made the first version at the same time: use theirs.
        if (!(err instanceof ControlRecordConflict)) throw err;
      }
    }
    throw new KeyStateError('the folder keyring keeps changing; retry');
  }

  /** A branch key version's plaintext (a copy: zero it after use), from the cache when fresh. */
  async branchKey(folder: string, v: number): Promise<Buffer> {
    await this.maybeCheckFlush();
    const cached = this.cache.get(cacheId(folder, v));
    if (cached) return Buffer.from(cached);
    const ring = await this.readKeyring(folder);
    const entry = ring?.payload.versions.find((x) => x.v === v);
    if (!entry) throw new IntegrityError();
    return this.unwrapBranch(folder, entry);
  }

  private async keyOf(folder: string, entry: BranchVersion): Promise<Buffer> {
    await this.maybeCheckFlush();
    const cached = this.cache.get(cacheId(folder, entry.v));
    if (cached) return Buffer.from(cached);
    return this.unwrapBranch(folder, entry);
  }

  /** Unwraps a branch key with the root (one root operation) and caches it. */
  private async unwrapBranch(folder: string, entry: BranchVersion): Promise<Buffer> {
    if (!entry.wrapped || entry.state === 'destroyed')
      throw new KeyStateError('the branch key was destroyed');
    this.rootOps.decrypt += 1;
    const plain = Buffer.from(
      await this.root.decrypt(
        { wrapped: Buffer.from(entry.wrapped, 'base64'), keyId: entry.root },
        branchContext(this.binding, folder, entry.v),
      ),
    );
    if (plain.length !== 32) {
      plain.fill(0);
      throw new IntegrityError();
    }
    this.cache.put(cacheId(folder, entry.v), plain);
    return plain;
  }

  /** The folder's keyring, verified (MAC, generation, and that it names this folder). */
  async readKeyring(folder: string): Promise<ControlRecord<Keyring> | undefined> {
    const record = await this.control.get<Keyring>(KEYRING_KIND, folderRecordId(folder));
    if (record && record.payload.folder !== folder) throw new IntegrityError();
    return record;
  }

  /** The active root key: the root control record, else the configured key. */
  async activeRoot(): Promise<{ record: ControlRecord<RootPointer> | undefined; keyId: string }> {
    const record = await this.control.get<RootPointer>(ROOT_KIND, ROOT_ID);
    const keyId = record?.payload.active ?? this.root.defaultKeyId;
    // A root id the installation does not allow is tampering or a config that lost a key.
    if (!this.root.isAllowed(keyId)) throw new IntegrityError();
    return { record, keyId };
  }

  /**
   * Adds a branch key version to a folder's keyring, wrapped by the active root. It is written as
   * `pending`, then tested (unwrapped by the root and compared, and a test data key wrapped and
   * unwrapped with it), and only then made `ready` (and active when `activate`). A failed test
   * leaves it pending and the active version as it was.
   */
  async createVersion(
    folder: string,
    ring: ControlRecord<Keyring> | undefined,
    options: { activate: boolean },
  ): Promise<{ v: number; record: ControlRecord<Keyring> }> {
    const { keyId: rootId } = await this.activeRoot();
    const payload: Keyring = ring?.payload ?? { folder, active: 0, history: [], versions: [] };
    const v = Math.max(0, ...payload.versions.map((x) => x.v)) + 1;
    this.rootOps.generate += 1;
    const made = await this.root.generate(rootId, branchContext(this.binding, folder, v));
    const plaintext = Buffer.from(made.plaintext);
    made.plaintext.fill(0);
    try {
      const entry: BranchVersion = {
        v,
        state: 'pending',
        root: made.keyId,
        wrapped: Buffer.from(made.wrapped).toString('base64'),
        createdAt: new Date(this.now()).toISOString(),
      };
      let record = await this.control.put<Keyring>(
        KEYRING_KIND,
        folderRecordId(folder),
        { ...payload, versions: [...payload.versions, entry] },
        ring?.generation ?? 0,
      );
      await this.testVersion(folder, entry, plaintext);
      record = await this.markReady(folder, record, v, options.activate);
      this.cache.put(cacheId(folder, v), plaintext);
      return { v, record };
    } finally {
      plaintext.fill(0);
    }
  }

  /** Tests a pending version again and, if it passes, makes it ready (and active): `keys rotate` resumes. */
  async finishPending(
    folder: string,
    ring: ControlRecord<Keyring>,
    v: number,
  ): Promise<ControlRecord<Keyring>> {
    const entry = ring.payload.versions.find((x) => x.v === v && x.state === 'pending');
    if (!entry) throw new KeyStateError('no such pending branch key version');
    const plain = await this.unwrapBranch(folder, entry);
    try {
      await this.testVersion(folder, entry, plain);
    } finally {
      plain.fill(0);
    }
    return this.markReady(folder, ring, v, true);
  }

  private async testVersion(folder: string, entry: BranchVersion, expected: Buffer): Promise<void> {
    this.rootOps.decrypt += 1;
    const back = Buffer.from(
      await this.root.decrypt(
        { wrapped: Buffer.from(entry.wrapped as string, 'base64'), keyId: entry.root },
        branchContext(this.binding, folder, entry.v),
      ),
    );
    try {
      if (back.length !== 32 || !timingSafeEqual(back, expected)) throw new IntegrityError();
      const probe = randomBytes(32);
      const ctx = {
        'coffer:table': this.binding,
        'coffer:path': `${folder}/.coffer-key-test`,
        'coffer:version': '0',
      };
      const kid = branchKeyId(folder, entry.v);
      const opened = unwrapDataKey(back, kid, wrapDataKey(back, kid, probe, ctx), ctx);
      if (!timingSafeEqual(opened, probe)) throw new IntegrityError();
    } finally {
      back.fill(0);
    }
  }

  private async markReady(
    folder: string,
    ring: ControlRecord<Keyring>,
    v: number,
    activate: boolean,
  ): Promise<ControlRecord<Keyring>> {
    const p = ring.payload;
    const next: Keyring = {
      ...p,
      versions: p.versions.map((x) => (x.v === v ? { ...x, state: 'ready' } : x)),
      ...(activate
        ? { active: v, history: p.active > 0 && p.active !== v ? [...p.history, p.active] : p.history }
        : {}),
    };
    return this.control.put<Keyring>(KEYRING_KIND, folderRecordId(folder), next, ring.generation);
  }

  /** Empties this instance's cache (and makes the next request re-read the flush record). */
  flushLocal(): void {
    this.cache.clear();
    this.lastFlushCheck = Number.NEGATIVE_INFINITY;
  }

  /** Notes the flush generation this instance has acted on (after it flushed itself). */
  noteFlush(generation: number): void {
    this.flushGeneration = Math.max(this.flushGeneration, generation);
  }

  /**
   * Re-reads the flush record when the last check is older than the bound: a newer generation
   * than this instance acted on empties its cache. On the request path, never on a timer.
   */
  private async maybeCheckFlush(): Promise<void> {
    if (!this.cache.enabled || this.cache.size === 0) return;
    const now = this.now();
    if (now - this.lastFlushCheck < this.flushCheckMs) return;
    const record = await this.control.get<{ at: string }>(FLUSH_KIND, FLUSH_ID);
    this.lastFlushCheck = now;
    const generation = record?.generation ?? 0;
    if (generation > this.flushGeneration) {
      this.cache.clear();
      this.flushGeneration = generation;
    }
  }
}

const cacheId = (folder: string, v: number) => `${folder}\0${v}`;
