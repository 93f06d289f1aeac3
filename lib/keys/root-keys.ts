import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  DecryptCommand,
  GenerateDataKeyCommand,
  type KMSClient,
  ReEncryptCommand,
  RotateKeyOnDemandCommand,
} from '@aws-sdk/client-kms';
import { ConfigError, IntegrityError } from '../errors.js';
import { KmsCaller, type KmsRetryOptions, requireKeyArn } from './kms.js';
import { keyIdOf, LocalKeyProvider, ringUnwrap, ringWrap } from './local.js';
import type { DataKey, EncryptionContext, KeyProvider, WrappedKey } from './provider.js';

/**
 * The root of the key hierarchy: the keys that wrap branch keys (and, for data written before the
 * hierarchy, data keys directly). Unlike a KeyProvider it names the key on every call, because the
 * active root is an authenticated control record, not a setting: `coffer keys rotate --root`
 * moves it at run time.
 */
export interface RootKeys {
  /** `local` or `kms`. */
  readonly name: string;
  /** The root used while no root control record exists (the configured key). */
  readonly defaultKeyId: string;
  /** Whether this installation may use `keyId` as a root (the pin against a tampered key id). */
  isAllowed(keyId: string): boolean;
  /** A fresh 256-bit key wrapped under `keyId`. */
  generate(keyId: string, context: EncryptionContext): Promise<DataKey>;
  decrypt(wrapped: WrappedKey, context: EncryptionContext): Promise<Uint8Array>;
  /** Re-wraps under `destinationKeyId` (KMS: inside KMS, the key never reaches this process). */
  reEncrypt(wrapped: WrappedKey, context: EncryptionContext, destinationKeyId: string): Promise<WrappedKey>;
  /** Makes a new root key where Coffer owns the keys (local ring); undefined elsewhere. */
  readonly createKey?: () => Promise<string>;
  /** KMS RotateKeyOnDemand on a key (new backing material, same ARN); undefined elsewhere. */
  readonly rotateOnDemand?: (keyId: string) => Promise<void>;
}

/**
 * The local root ring (`<dataDir>/keys/root-NNNN.key`, 0600), as LocalKeyProvider reads it, with
 * the root chosen per call. `createKey` adds a ring file and reloads.
 */
export class LocalRootKeys implements RootKeys {
  readonly name = 'local';
  private keys = new Map<string, Buffer>();
  private newest = '';

  private constructor(private readonly dataDir: string) {}

  static async open(dataDir: string): Promise<LocalRootKeys> {
    await LocalKeyProvider.open(dataDir);
    const ring = new LocalRootKeys(dataDir);
    await ring.reload();
    return ring;
  }

  get defaultKeyId(): string {
    return this.newest;
  }

  readonly createKey = async (): Promise<string> => {
    const id = await LocalKeyProvider.rotate(this.dataDir);
    await this.reload();
    return id;
  };

  isAllowed(keyId: string): boolean {
    return this.keys.has(keyId);
  }

  async generate(keyId: string, context: EncryptionContext): Promise<DataKey> {
    const plaintext = randomBytes(32);
    return { plaintext, wrapped: this.wrap(plaintext, keyId, context), keyId };
  }

  async decrypt(wrapped: WrappedKey, context: EncryptionContext): Promise<Uint8Array> {
    // The same format as LocalKeyProvider's: a key wrapped by either opens with the other.
    return ringUnwrap(this.keys, wrapped, context);
  }

  async reEncrypt(
    wrapped: WrappedKey,
    context: EncryptionContext,
    destinationKeyId: string,
  ): Promise<WrappedKey> {
    const plaintext = Buffer.from(await this.decrypt(wrapped, context));
    try {
      return { wrapped: this.wrap(plaintext, destinationKeyId, context), keyId: destinationKeyId };
    } finally {
      plaintext.fill(0);
    }
  }

  private wrap(plaintext: Uint8Array, keyId: string, context: EncryptionContext): Buffer {
    const key = this.keys.get(keyId);
    if (!key) throw new IntegrityError();
    return ringWrap(key, keyId, plaintext, context);
  }

  private async reload(): Promise<void> {
    const dir = join(this.dataDir, 'keys');
    const files = (await readdir(dir)).filter((f) => /^root-\d{4}\.key$/.test(f)).sort();
    const keys = new Map<string, Buffer>();
    let newest = '';
    for (const f of files) {
      const key = await readFile(join(dir, f));
      if (key.length !== 32) continue;
      newest = keyIdOf(key);
      keys.set(newest, key);
    }
    this.keys = keys;
    this.newest = newest;
  }
}

export interface KmsRootKeysOptions extends KmsRetryOptions {
  /** A client with its own retries off (see KmsKeyProviderOptions.client). */
  readonly client: KMSClient;
  /** ARN of the configured root (the data key id of installations from before the hierarchy). */
  readonly keyId: string;
  /** ARNs that wrapped older data and may still unwrap it. */
  readonly previousKeyIds?: readonly string[];
  /**
   * ARNs `coffer keys rotate --root --kms-key` may move to (CDK context `rootKeyArns`). Each must
   * be in `account` when it is given.
   */
  readonly allowedKeyIds?: readonly string[];
  /** The stack's account: allow-listed keys elsewhere are refused at start. */
  readonly account?: string;
}

/** KMS roots: every call names an allow-listed ARN explicitly, never one read from the table alone. */
export class KmsRootKeys implements RootKeys {
  readonly name = 'kms';
  readonly defaultKeyId: string;
  private readonly client: KMSClient;
  private readonly allowed: ReadonlySet<string>;
  private readonly kms: KmsCaller;

  constructor(options: KmsRootKeysOptions) {
    this.client = options.client;
    this.defaultKeyId = requireKeyArn('the root key id', options.keyId);
    const extra = [...(options.previousKeyIds ?? []), ...(options.allowedKeyIds ?? [])].map((k) =>
      requireKeyArn('an allowed root key id', k),
    );
    if (options.account !== undefined) {
      for (const arn of [this.defaultKeyId, ...(options.allowedKeyIds ?? [])]) {
        if (arn.split(':')[4] !== options.account) {
          throw new ConfigError("root key ARNs must be in the stack's own account");
        }
      }
    }
    this.allowed = new Set([this.defaultKeyId, ...extra]);
    this.kms = new KmsCaller(options);
  }

  isAllowed(keyId: string): boolean {
    return this.allowed.has(keyId);
  }

  async generate(keyId: string, context: EncryptionContext): Promise<DataKey> {
    if (!this.allowed.has(keyId)) throw new IntegrityError();
    const out = await this.kms.call('GenerateDataKey', () =>
      this.client.send(
        new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: { ...context } }),
      ),
    );
    const plaintext = out.Plaintext;
    if (plaintext?.length !== 32 || !out.CiphertextBlob || out.KeyId !== keyId) {
      plaintext?.fill(0);
      throw new Error('KMS GenerateDataKey returned an unexpected answer');
    }
    return { plaintext, wrapped: out.CiphertextBlob, keyId };
  }

  async decrypt(wrapped: WrappedKey, context: EncryptionContext): Promise<Uint8Array> {
    if (!this.allowed.has(wrapped.keyId)) throw new IntegrityError();
    const out = await this.kms.call('Decrypt', () =>
      this.client.send(
        new DecryptCommand({
          KeyId: wrapped.keyId,
          CiphertextBlob: wrapped.wrapped,
          EncryptionContext: { ...context },
        }),
      ),
    );
    const plaintext = out.Plaintext;
    if (plaintext?.length !== 32 || out.KeyId !== wrapped.keyId) {
      plaintext?.fill(0);
      throw new IntegrityError();
    }
    return plaintext;
  }

  async reEncrypt(
    wrapped: WrappedKey,
    context: EncryptionContext,
    destinationKeyId: string,
  ): Promise<WrappedKey> {
    if (!this.allowed.has(wrapped.keyId) || !this.allowed.has(destinationKeyId)) throw new IntegrityError();
    const out = await this.kms.call('ReEncrypt', () =>
      this.client.send(
        new ReEncryptCommand({
          CiphertextBlob: wrapped.wrapped,
          SourceKeyId: wrapped.keyId,
          SourceEncryptionContext: { ...context },
          DestinationKeyId: destinationKeyId,
          DestinationEncryptionContext: { ...context },
        }),
      ),
    );
    if (!out.CiphertextBlob || out.KeyId !== destinationKeyId) {
      throw new Error('KMS ReEncrypt returned an unexpected answer');
    }
    return { wrapped: out.CiphertextBlob, keyId: destinationKeyId };
  }

  readonly rotateOnDemand = async (keyId: string): Promise<void> => {
    if (!this.allowed.has(keyId)) throw new IntegrityError();
    await this.kms.call('RotateKeyOnDemand', () =>
      this.client.send(new RotateKeyOnDemandCommand({ KeyId: keyId })),
    );
  };
}

/**
 * A plain KeyProvider as the root (tests, and ports built by a caller): one root, its own key id.
 * Re-wrapping to another root is refused, as the provider knows only its own.
 */
export class ProviderRootKeys implements RootKeys {
  readonly name: string;
  readonly defaultKeyId: string;

  constructor(private readonly provider: KeyProvider) {
    this.name = provider.name;
    this.defaultKeyId = provider.keyId;
  }

  isAllowed(keyId: string): boolean {
    return keyId === this.provider.keyId;
  }

  generate(keyId: string, context: EncryptionContext): Promise<DataKey> {
    if (keyId !== this.provider.keyId) throw new IntegrityError();
    return this.provider.generateDataKey(context);
  }

  decrypt(wrapped: WrappedKey, context: EncryptionContext): Promise<Uint8Array> {
    return this.provider.decryptDataKey(wrapped, context);
  }

  reEncrypt(wrapped: WrappedKey, context: EncryptionContext, destinationKeyId: string): Promise<WrappedKey> {
    if (destinationKeyId !== this.provider.keyId) throw new IntegrityError();
    return this.provider.reEncrypt(wrapped, context);
  }
}
