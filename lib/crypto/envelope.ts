import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { IntegrityError } from '../errors.js';
import type { EncryptionContext, KeyProvider } from '../keys/provider.js';
import { encodeFields } from './canonical.js';

export const ENVELOPE_ALGORITHM = 'AES-256-GCM';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** The identity a stored value is bound to. Moving a value to another identity breaks it. */
export interface SecretIdentity {
  readonly table: string;
  readonly path: string;
  readonly version: number;
  /**
   * The version's secret type. Any type but `text` is bound into the AAD, so that a stored
   * version cannot be relabelled (binary read as text, text as a keypair) without failing to open.
   */
  readonly valueType?: string;
}

/** What is stored for one version: nothing here reveals the value or the data key. */
export interface SealedValue {
  readonly algorithm: typeof ENVELOPE_ALGORITHM;
  readonly iv: Uint8Array;
  /** Ciphertext followed by the 16-byte GCM tag. */
  readonly ciphertext: Uint8Array;
  readonly wrappedKey: Uint8Array;
  readonly keyProvider: string;
  readonly keyId: string;
}

/** The KMS encryption context (and local wrap AAD): names the secret, holds nothing secret. */
export function encryptionContextFor(id: SecretIdentity): EncryptionContext {
  return { 'coffer:table': id.table, 'coffer:path': id.path, 'coffer:version': String(id.version) };
}

/**
 * AAD for the value: a canonical encoding of table, path and version, and of the type when it is
 * not `text` (text values, and every value written before types, keep the v1 encoding).
 */
export function valueAad(id: SecretIdentity): Buffer {
  if (id.valueType === undefined || id.valueType === 'text') {
    return encodeFields('coffer/value/v1', [id.table, id.path, String(id.version)]);
  }
  return encodeFields('coffer/value/v2', [id.table, id.path, String(id.version), id.valueType]);
}

/**
 * Envelope encryption: a fresh data key per version from the KeyProvider, AES-256-GCM with a
 * random 96-bit IV and AAD bound to the version's identity. One data key seals one value, so there
 * is no GCM nonce budget to track.
 */
export class Envelope {
  constructor(private readonly keys: KeyProvider) {}

  /** Seals a value: text is sealed as its UTF-8 bytes, bytes exactly as they are. */
  async seal(plaintext: string | Uint8Array, id: SecretIdentity): Promise<SealedValue> {
    const dataKey = await this.keys.generateDataKey(encryptionContextFor(id));
    const key = Buffer.from(dataKey.plaintext);
    try {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(valueAad(id));
      const bytes = typeof plaintext === 'string' ? Buffer.from(plaintext, 'utf8') : plaintext;
      const body = Buffer.concat([cipher.update(bytes), cipher.final(), cipher.getAuthTag()]);
      return {
        algorithm: ENVELOPE_ALGORITHM,
        iv,
        ciphertext: body,
        wrappedKey: dataKey.wrapped,
        keyProvider: this.keys.name,
        keyId: dataKey.keyId,
      };
    } finally {
      key.fill(0);
      if (dataKey.plaintext instanceof Uint8Array) dataKey.plaintext.fill(0);
    }
  }

  /** Opens a sealed text value (see openBytes). */
  async open(sealed: SealedValue, id: SecretIdentity): Promise<string> {
    return (await this.openBytes(sealed, id)).toString('utf8');
  }

  /** Opens a sealed value. Any altered, moved or swapped byte gives IntegrityError, nothing else. */
  async openBytes(sealed: SealedValue, id: SecretIdentity): Promise<Buffer> {
    if (
      sealed.algorithm !== ENVELOPE_ALGORITHM ||
      sealed.iv.length !== IV_BYTES ||
      sealed.ciphertext.length < TAG_BYTES
    ) {
      throw new IntegrityError();
    }
    const dataKey = await this.keys.decryptDataKey(
      { wrapped: sealed.wrappedKey, keyId: sealed.keyId },
      encryptionContextFor(id),
    );
    const key = Buffer.from(dataKey);
    try {
      if (key.length !== 32) throw new IntegrityError();
      const body = Buffer.from(sealed.ciphertext);
      const tag = body.subarray(body.length - TAG_BYTES);
      const decipher = createDecipheriv('aes-256-gcm', key, sealed.iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(valueAad(id));
      decipher.setAuthTag(tag);
      try {
        return Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_BYTES)), decipher.final()]);
      } catch {
        throw new IntegrityError();
      }
    } finally {
      key.fill(0);
      dataKey.fill(0);
    }
  }

  /** Re-wraps the data key of a sealed value under the provider's current key (key rotation). */
  async rewrap(sealed: SealedValue, id: SecretIdentity): Promise<SealedValue> {
    const next = await this.keys.reEncrypt(
      { wrapped: sealed.wrappedKey, keyId: sealed.keyId },
      encryptionContextFor(id),
    );
    return { ...sealed, wrappedKey: next.wrapped, keyId: next.keyId, keyProvider: this.keys.name };
  }
}
