/**
 * The key port. A KeyProvider makes, unwraps and re-wraps per-version data keys; it never sees a
 * secret value. Adapters: `local` (a software root key in the data dir) and `kms` (AWS KMS, with
 * the key optionally in a CloudHSM custom key store).
 */

/**
 * Names the secret version a data key belongs to. It is bound to the wrapped key (KMS encryption
 * context, or AAD for the local provider) and, in AWS, appears in CloudTrail in plain text: it
 * names the secret and must never hold anything secret.
 */
export type EncryptionContext = Readonly<Record<string, string>>;

export interface DataKey {
  /** The 256-bit data key. Lives in memory for one request; zero it after use. */
  readonly plaintext: Uint8Array;
  /** The data key wrapped by the provider's root key. Safe to store. */
  readonly wrapped: Uint8Array;
  /** The root key that wrapped it (a KMS key ARN, or the local key's id). */
  readonly keyId: string;
}

export interface WrappedKey {
  readonly wrapped: Uint8Array;
  readonly keyId: string;
}

export interface KeyProvider {
  /** `local` or `kms`: stored beside each version so data can be re-wrapped later. */
  readonly name: string;
  /** The key new data keys are wrapped under. */
  readonly keyId: string;
  generateDataKey(context: EncryptionContext): Promise<DataKey>;
  /**
   * Unwraps a data key. Throws IntegrityError when the wrapped key or its context was altered,
   * KeyStoreUnavailableError when the key store cannot answer.
   */
  decryptDataKey(wrapped: WrappedKey, context: EncryptionContext): Promise<Uint8Array>;
  /** Re-wraps a data key under the provider's current key without exposing it here. */
  reEncrypt(wrapped: WrappedKey, context: EncryptionContext): Promise<WrappedKey>;
}

/** Signature algorithms of the root audit key. */
export type RootSignatureAlgorithm = 'Ed25519' | 'ECDSA_SHA_256';

/**
 * The root audit key. It certifies each writer's ephemeral key and signs checkpoints. Locally an
 * Ed25519 key in the data dir; in AWS an asymmetric ECC_NIST_P256 KMS key (signing a SHA-256
 * digest, DER-encoded signature).
 */
export interface RootSigner {
  readonly algorithm: RootSignatureAlgorithm;
  readonly keyId: string;
  sign(message: Uint8Array): Promise<Uint8Array>;
  /** SPKI PEM of the public key. Verifiers take it out of band, never from the audit table. */
  publicKeyPem(): Promise<string>;
}
