import { createHash, createPublicKey } from 'node:crypto';
import {
  DecryptCommand,
  GenerateDataKeyCommand,
  GenerateMacCommand,
  GetPublicKeyCommand,
  type KMSClient,
  ReEncryptCommand,
  SignCommand,
} from '@aws-sdk/client-kms';
import { isRetryableFailure } from '../../packages/client/src/failures.js';
import { retry, sleep } from '../../packages/client/src/retry.js';
import { CofferError, ConfigError, IntegrityError, KeyStoreUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';
import type { DataKey, EncryptionContext, KeyProvider, RootSigner, WrappedKey } from './provider.js';

/**
 * AWS KMS adapters: the KeyProvider for data keys (a symmetric key, standard or in a CloudHSM
 * custom key store) and the RootSigner for audit (an asymmetric ECC_NIST_P256 key).
 *
 * Both pin key ARNs: new data keys are made under exactly one key, and a stored wrapped key is only
 * ever sent to KMS with an explicit KeyId from an allow-list, so a tampered `keyId` in the table can
 * neither make us use a key we did not choose nor turn into a confused-deputy call.
 *
 * Errors become domain errors here, in one place:
 * - throttling (after the retries), a disabled key, a key pending deletion, a disconnected custom
 *   key store, HSM trouble, access denied: `KeyStoreUnavailableError` (503 `key_store_unavailable`);
 * - a wrapped key that does not open (altered bytes or a different encryption context):
 *   `IntegrityError`, which says nothing about which check failed.
 */

/** A KMS key ARN. Aliases are refused: KMS answers with the key ARN, which must match the pin. */
const KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/;

/** The wrapped key or its context was altered: never retried, never a 503. */
const INTEGRITY = new Set(['InvalidCiphertextException', 'IncorrectKeyException']);

export interface KmsRetryOptions {
  /** Attempts per KMS call, the first included (default 4). */
  readonly attempts?: number;
  /** Base of the exponential backoff in ms (default 50); each wait is a random fraction of it. */
  readonly baseDelayMs?: number;
  /** Upper bound of one wait in ms (default 1000). */
  readonly maxDelayMs?: number;
  /** Injected by tests so retries take no wall time. */
  readonly sleep?: (ms: number) => Promise<void>;
  /** Receives one line per failed KMS call: the operation and the error's name, nothing else. */
  readonly logger?: Logger;
}

export interface KmsKeyProviderOptions extends KmsRetryOptions {
  /**
   * A client whose own retries are off (`maxAttempts: 1`): this adapter retries with its own
   * jittered backoff, and two layers of retries would multiply.
   */
  readonly client: KMSClient;
  /** ARN of the symmetric key new data keys are wrapped under. */
  readonly keyId: string;
  /**
   * ARNs of keys that wrapped older versions and may still unwrap them (after moving to a new key,
   * until everything is re-wrapped). Automatic rotation of one key needs nothing here: its ARN
   * stays the same.
   */
  readonly previousKeyIds?: readonly string[];
}

type ErrorLike = {
  name?: unknown;
  code?: unknown;
  $retryable?: unknown;
  $metadata?: { httpStatusCode?: number };
};

function errorName(err: unknown): string {
  const e = err as ErrorLike | undefined;
  return typeof e?.name === 'string' ? e.name : 'Error';
}

/** True for errors that came from the AWS SDK (a service answer or a transport failure). */
function isAwsError(err: unknown): boolean {
  const e = err as ErrorLike | undefined;
  return (
    e?.$metadata !== undefined ||
    isRetryableFailure(err) ||
    /Exception$/.test(errorName(err)) ||
    errorName(err) === 'AccessDenied'
  );
}

/**
 * Maps a KMS failure to a domain error. Everything that says "KMS or the HSM cannot do this now"
 * (DisabledException, KMSInvalidStateException for a disconnected custom key store or a key pending
 * deletion, CustomKeyStoreInvalidStateException, CloudHsm*Exception, KMSInternalException from HSM
 * trouble, NotFoundException, AccessDeniedException, throttling) is a 503: the caller did nothing
 * wrong and may retry later.
 */
export function mapKmsError(err: unknown): Error {
  if (err instanceof CofferError) return err;
  if (INTEGRITY.has(errorName(err))) return new IntegrityError();
  if (isAwsError(err)) return new KeyStoreUnavailableError();
  return err instanceof Error ? err : new Error('KMS call failed');
}

/** Runs one KMS call with the shared full-jitter retry (throttling, unavailability), then maps its error. */
export class KmsCaller {
  private readonly attempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly logger: Logger | undefined;

  constructor(options: KmsRetryOptions) {
    this.attempts = Math.max(1, options.attempts ?? 4);
    this.baseDelayMs = options.baseDelayMs ?? 50;
    this.maxDelayMs = options.maxDelayMs ?? 1000;
    this.sleep = options.sleep ?? sleep;
    this.logger = options.logger;
  }

  async call<T>(operation: string, run: () => Promise<T>): Promise<T> {
    try {
      return await retry(run, {
        attempts: this.attempts,
        baseDelayMs: this.baseDelayMs,
        maxDelayMs: this.maxDelayMs,
        isRetryable: isRetryableFailure,
        sleep: this.sleep,
        onFailure: (err, attempt, retrying) => {
          const code = (err as ErrorLike | undefined)?.code;
          this.logger?.warn('kms call failed', {
            operation,
            errorName: errorName(err),
            ...(typeof code === 'string' ? { errorCode: code.slice(0, 64) } : {}),
            attempt,
            retrying,
          });
        },
      });
    } catch (err) {
      throw mapKmsError(err);
    }
  }
}

export function requireKeyArn(what: string, keyId: string): string {
  if (!KEY_ARN.test(keyId)) throw new ConfigError(`${what} must be a KMS key ARN (arn:aws:kms:…:key/…)`);
  return keyId;
}

/** KMS takes a plain record; a frozen or prototype-less context is copied into one. */
function contextOf(context: EncryptionContext): Record<string, string> {
  return { ...context };
}

/**
 * The KMS KeyProvider: GenerateDataKey (AES_256), Decrypt and ReEncrypt, each with the version's
 * encryption context and an explicit KeyId.
 *
 * @example
 * const keys = new KmsKeyProvider({
 *   client: new KMSClient({ maxAttempts: 1 }),
 *   keyId: 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
 * });
 */
export class KmsKeyProvider implements KeyProvider {
  readonly name = 'kms';
  readonly keyId: string;
  private readonly client: KMSClient;
  private readonly allowed: ReadonlySet<string>;
  private readonly kms: KmsCaller;

  constructor(options: KmsKeyProviderOptions) {
    this.client = options.client;
    this.keyId = requireKeyArn('the data key id', options.keyId);
    this.allowed = new Set([
      this.keyId,
      ...(options.previousKeyIds ?? []).map((k) => requireKeyArn('a previous data key id', k)),
    ]);
    this.kms = new KmsCaller(options);
  }

  async generateDataKey(context: EncryptionContext): Promise<DataKey> {
    const out = await this.kms.call('GenerateDataKey', () =>
      this.client.send(
        new GenerateDataKeyCommand({
          KeyId: this.keyId,
          KeySpec: 'AES_256',
          EncryptionContext: contextOf(context),
        }),
      ),
    );
    const plaintext = out.Plaintext;
    if (plaintext?.length !== 32 || !out.CiphertextBlob || out.KeyId !== this.keyId) {
      plaintext?.fill(0);
      throw new Error('KMS GenerateDataKey returned an unexpected answer');
    }
    return { plaintext, wrapped: out.CiphertextBlob, keyId: this.keyId };
  }

  async decryptDataKey(wrapped: WrappedKey, context: EncryptionContext): Promise<Uint8Array> {
    // A key id we did not configure is tampering (or data of another deployment): never sent to KMS.
    if (!this.allowed.has(wrapped.keyId)) throw new IntegrityError();
    const out = await this.kms.call('Decrypt', () =>
      this.client.send(
        new DecryptCommand({
          KeyId: wrapped.keyId,
          CiphertextBlob: wrapped.wrapped,
          EncryptionContext: contextOf(context),
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

  /** ReEncrypt happens inside KMS: the data key never reaches this process. */
  async reEncrypt(wrapped: WrappedKey, context: EncryptionContext): Promise<WrappedKey> {
    if (!this.allowed.has(wrapped.keyId)) throw new IntegrityError();
    const out = await this.kms.call('ReEncrypt', () =>
      this.client.send(
        new ReEncryptCommand({
          CiphertextBlob: wrapped.wrapped,
          SourceKeyId: wrapped.keyId,
          SourceEncryptionContext: contextOf(context),
          DestinationKeyId: this.keyId,
          DestinationEncryptionContext: contextOf(context),
        }),
      ),
    );
    if (!out.CiphertextBlob || out.KeyId !== this.keyId) {
      throw new Error('KMS ReEncrypt returned an unexpected answer');
    }
    return { wrapped: out.CiphertextBlob, keyId: this.keyId };
  }
}

export interface KmsRootSignerOptions extends KmsRetryOptions {
  /** See KmsKeyProviderOptions.client. */
  readonly client: KMSClient;
  /** ARN of the asymmetric ECC_NIST_P256 SIGN_VERIFY key. */
  readonly keyId: string;
}

/**
 * The root audit key in KMS: signs the SHA-256 digest of a message (`MessageType: DIGEST`, so the
 * message itself, up to any size, never leaves the process) with ECDSA_SHA_256. KMS returns a DER
 * signature, which is what `node:crypto.verify('sha256', message, publicKeyPem, signature)` takes.
 */
export class KmsRootSigner implements RootSigner {
  readonly algorithm = 'ECDSA_SHA_256';
  readonly keyId: string;
  private readonly client: KMSClient;
  private readonly kms: KmsCaller;
  private publicKey: Promise<string> | undefined;

  constructor(options: KmsRootSignerOptions) {
    this.client = options.client;
    this.keyId = requireKeyArn('the audit key id', options.keyId);
    this.kms = new KmsCaller(options);
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    const digest = createHash('sha256').update(message).digest();
    const out = await this.kms.call('Sign', () =>
      this.client.send(
        new SignCommand({
          KeyId: this.keyId,
          Message: digest,
          MessageType: 'DIGEST',
          SigningAlgorithm: 'ECDSA_SHA_256',
        }),
      ),
    );
    if (!out.Signature || out.Signature.length === 0 || out.KeyId !== this.keyId) {
      throw new Error('KMS Sign returned an unexpected answer');
    }
    return out.Signature;
  }

  /** The key's SPKI PEM, fetched once per process (a failed fetch is tried again next time). */
  publicKeyPem(): Promise<string> {
    this.publicKey ??= this.fetchPublicKey().catch((err) => {
      this.publicKey = undefined;
      throw err;
    });
    return this.publicKey;
  }

  private async fetchPublicKey(): Promise<string> {
    const out = await this.kms.call('GetPublicKey', () =>
      this.client.send(new GetPublicKeyCommand({ KeyId: this.keyId })),
    );
    if (
      !out.PublicKey ||
      out.KeySpec !== 'ECC_NIST_P256' ||
      out.KeyUsage !== 'SIGN_VERIFY' ||
      !(out.SigningAlgorithms ?? []).includes('ECDSA_SHA_256')
    ) {
      throw new ConfigError('the audit key must be an ECC_NIST_P256 SIGN_VERIFY key');
    }
    return createPublicKey({ key: Buffer.from(out.PublicKey), format: 'der', type: 'spki' })
      .export({ type: 'spki', format: 'pem' })
      .toString();
  }
}

export interface KmsMacKeyOptions extends KmsRetryOptions {
  readonly client: KMSClient;
  /** ARN of an HMAC_256 (GENERATE_VERIFY_MAC) key. */
  readonly keyId: string;
  /** What the derived key is for; a different label gives an unrelated key. */
  readonly label: string;
}

/**
 * Derives a 32-byte key as HMAC-SHA256(KMS HMAC key, label), computed inside KMS. The key is never
 * stored anywhere: any process allowed `kms:GenerateMac` on that key (the API, an auditor) derives
 * the same one, and nobody else can. Used for the audit field hashes.
 */
export async function deriveKmsMacKey(options: KmsMacKeyOptions): Promise<Uint8Array> {
  const keyId = requireKeyArn('the MAC key id', options.keyId);
  const out = await new KmsCaller(options).call('GenerateMac', () =>
    options.client.send(
      new GenerateMacCommand({
        KeyId: keyId,
        MacAlgorithm: 'HMAC_SHA_256',
        Message: new TextEncoder().encode(options.label),
      }),
    ),
  );
  if (out.Mac?.length !== 32) throw new Error('KMS GenerateMac returned an unexpected answer');
  return out.Mac;
}
