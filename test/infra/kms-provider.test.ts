import { createHash, verify } from 'node:crypto';
import {
  CustomKeyStoreInvalidStateException,
  DecryptCommand,
  DisabledException,
  GenerateDataKeyCommand,
  GetPublicKeyCommand,
  KMSClient,
  KMSInternalException,
  KMSInvalidStateException,
  KMSServiceException,
  ReEncryptCommand,
  SignCommand,
} from '@aws-sdk/client-kms';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Envelope, encryptionContextFor } from '../../lib/crypto/envelope.js';
import { ConfigError, IntegrityError, KeyStoreUnavailableError } from '../../lib/errors.js';
import { statusOf } from '../../lib/http/errors.js';
import { KmsKeyProvider, KmsRootSigner } from '../../lib/keys/kms.js';
import { AUDIT_KEY_ARN, DATA_KEY_ARN, fakeKms, OTHER_KEY_ARN } from './support/fake-kms.js';

const kms = mockClient(KMSClient);
const client = new KMSClient({ region: 'eu-west-1', maxAttempts: 1 });
const context = encryptionContextFor({ table: 'coffer-secrets', path: 'team-a/db/password', version: 3 });

const throttling = () =>
  new KMSServiceException({
    name: 'ThrottlingException',
    $fault: 'client',
    $metadata: {},
    message: 'slow down',
  });

function provider(extra: { previousKeyIds?: string[]; attempts?: number; waits?: number[] } = {}) {
  return new KmsKeyProvider({
    client,
    keyId: DATA_KEY_ARN,
    ...(extra.previousKeyIds ? { previousKeyIds: extra.previousKeyIds } : {}),
    ...(extra.attempts ? { attempts: extra.attempts } : {}),
    sleep: async (ms) => {
      extra.waits?.push(ms);
    },
  });
}

beforeEach(() => kms.reset());
afterEach(() => kms.reset());

describe('KmsKeyProvider', () => {
  it('when it makes a data key, it sends GenerateDataKey AES_256 with the pinned key ARN and the context', async () => {
    kms.on(GenerateDataKeyCommand).resolves({
      KeyId: DATA_KEY_ARN,
      Plaintext: new Uint8Array(32).fill(7),
      CiphertextBlob: new Uint8Array([1, 2, 3]),
    });
    const key = await provider().generateDataKey(context);
    expect(kms.commandCalls(GenerateDataKeyCommand)).toHaveLength(1);
    expect(kms.commandCalls(GenerateDataKeyCommand)[0]?.args[0].input).toEqual({
      KeyId: DATA_KEY_ARN,
      KeySpec: 'AES_256',
      EncryptionContext: {
        'coffer:table': 'coffer-secrets',
        'coffer:path': 'team-a/db/password',
        'coffer:version': '3',
      },
    });
    expect(key.keyId).toBe(DATA_KEY_ARN);
    expect([...key.wrapped]).toEqual([1, 2, 3]);
  });

  it('when it unwraps, it sends Decrypt with the stored key ARN and the same context', async () => {
    kms.on(DecryptCommand).resolves({ KeyId: DATA_KEY_ARN, Plaintext: new Uint8Array(32).fill(9) });
    const plaintext = await provider().decryptDataKey(
      { wrapped: new Uint8Array([4, 5]), keyId: DATA_KEY_ARN },
      context,
    );
    expect(plaintext).toHaveLength(32);
    expect(kms.commandCalls(DecryptCommand)[0]?.args[0].input).toEqual({
      KeyId: DATA_KEY_ARN,
      CiphertextBlob: new Uint8Array([4, 5]),
      EncryptionContext: context,
    });
  });

  it('when it re-wraps, it sends ReEncrypt from the old key to the current key with the context on both sides', async () => {
    kms.on(ReEncryptCommand).resolves({ KeyId: DATA_KEY_ARN, CiphertextBlob: new Uint8Array([8]) });
    const next = await provider({ previousKeyIds: [OTHER_KEY_ARN] }).reEncrypt(
      { wrapped: new Uint8Array([6]), keyId: OTHER_KEY_ARN },
      context,
    );
    expect(next).toEqual({ wrapped: new Uint8Array([8]), keyId: DATA_KEY_ARN });
    expect(kms.commandCalls(ReEncryptCommand)[0]?.args[0].input).toEqual({
      CiphertextBlob: new Uint8Array([6]),
      SourceKeyId: OTHER_KEY_ARN,
      SourceEncryptionContext: context,
      DestinationKeyId: DATA_KEY_ARN,
      DestinationEncryptionContext: context,
    });
  });

  it('when a stored key id is not one it was configured with, it refuses without calling KMS', async () => {
    await expect(
      provider().decryptDataKey({ wrapped: new Uint8Array([1]), keyId: OTHER_KEY_ARN }, context),
    ).rejects.toBeInstanceOf(IntegrityError);
    expect(kms.calls()).toHaveLength(0);
  });

  it('when it is configured with an alias instead of a key ARN, it refuses to start', () => {
    expect(() => new KmsKeyProvider({ client, keyId: 'alias/coffer' })).toThrow(ConfigError);
  });

  it('when KMS throttles, it retries with jittered backoff and then succeeds', async () => {
    kms
      .on(GenerateDataKeyCommand)
      .rejectsOnce(throttling())
      .rejectsOnce(throttling())
      .resolves({ KeyId: DATA_KEY_ARN, Plaintext: new Uint8Array(32), CiphertextBlob: new Uint8Array([1]) });
    const waits: number[] = [];
    await provider({ waits }).generateDataKey(context);
    expect(kms.commandCalls(GenerateDataKeyCommand)).toHaveLength(3);
    expect(waits).toHaveLength(2);
    expect(waits[0]).toBeLessThanOrEqual(50);
    expect(waits[1]).toBeLessThanOrEqual(100);
  });

  it('when KMS keeps throttling, it gives up after its attempts with 503 key_store_unavailable', async () => {
    kms.on(DecryptCommand).rejects(throttling());
    const err = await provider({ attempts: 3 })
      .decryptDataKey({ wrapped: new Uint8Array([1]), keyId: DATA_KEY_ARN }, context)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KeyStoreUnavailableError);
    expect(statusOf((err as KeyStoreUnavailableError).code)).toBe(503);
    expect(kms.commandCalls(DecryptCommand)).toHaveLength(3);
  });

  it.each([
    [
      'a disconnected custom key store',
      () => new KMSInvalidStateException({ message: 'custom key store is not connected', $metadata: {} }),
    ],
    [
      'a custom key store in a bad state',
      () => new CustomKeyStoreInvalidStateException({ message: 'x', $metadata: {} }),
    ],
    ['a disabled key', () => new DisabledException({ message: 'x', $metadata: {} })],
    [
      'access denied',
      () => new KMSServiceException({ name: 'AccessDeniedException', $fault: 'client', $metadata: {} }),
    ],
  ])('when KMS reports %s, it answers 503 without retrying', async (_what, error) => {
    kms.on(GenerateDataKeyCommand).rejects(error());
    await expect(provider().generateDataKey(context)).rejects.toBeInstanceOf(KeyStoreUnavailableError);
    expect(kms.commandCalls(GenerateDataKeyCommand)).toHaveLength(1);
  });

  it('when the HSM behind the key store fails (KMSInternalException), it retries, then answers 503', async () => {
    kms.on(GenerateDataKeyCommand).rejects(new KMSInternalException({ message: 'hsm', $metadata: {} }));
    await expect(provider({ attempts: 2 }).generateDataKey(context)).rejects.toBeInstanceOf(
      KeyStoreUnavailableError,
    );
    expect(kms.commandCalls(GenerateDataKeyCommand)).toHaveLength(2);
  });

  it('when the context or the wrapped key was altered, it answers integrity_error', async () => {
    fakeKms(kms);
    const keys = provider();
    const envelope = new Envelope(keys);
    const id = { table: 'coffer-secrets', path: 'team-a/db/password', version: 1 };
    const sealed = await envelope.seal('s3cret', id);
    expect(await envelope.open(sealed, id)).toBe('s3cret');
    await expect(envelope.open(sealed, { ...id, version: 2 })).rejects.toBeInstanceOf(IntegrityError);
    const flipped = new Uint8Array(sealed.wrappedKey);
    flipped[20] = (flipped[20] as number) ^ 1;
    await expect(envelope.open({ ...sealed, wrappedKey: flipped }, id)).rejects.toBeInstanceOf(
      IntegrityError,
    );
  });

  it('when it re-wraps a value under a new key, the value still opens and the old key is no longer needed', async () => {
    fakeKms(kms, [DATA_KEY_ARN, OTHER_KEY_ARN]);
    const id = { table: 'coffer-secrets', path: 'a/b', version: 1 };
    const old = new Envelope(new KmsKeyProvider({ client, keyId: OTHER_KEY_ARN }));
    const sealed = await old.seal('v', id);
    const current = new Envelope(provider({ previousKeyIds: [OTHER_KEY_ARN] }));
    const rewrapped = await current.rewrap(sealed, id);
    expect(rewrapped.keyId).toBe(DATA_KEY_ARN);
    expect(await new Envelope(provider()).open(rewrapped, id)).toBe('v');
  });
});

describe('KmsRootSigner', () => {
  it('when it signs, it sends the SHA-256 digest with MessageType DIGEST and ECDSA_SHA_256, and node verifies the DER signature', async () => {
    const fake = fakeKms(kms);
    const signer = new KmsRootSigner({ client, keyId: AUDIT_KEY_ARN });
    const message = Buffer.from('checkpoint #42');
    const signature = await signer.sign(message);
    const input = kms.commandCalls(SignCommand)[0]?.args[0].input;
    expect(input).toEqual({
      KeyId: AUDIT_KEY_ARN,
      Message: createHash('sha256').update(message).digest(),
      MessageType: 'DIGEST',
      SigningAlgorithm: 'ECDSA_SHA_256',
    });
    const pem = await signer.publicKeyPem();
    expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(verify('sha256', message, pem, signature)).toBe(true);
    expect(verify('sha256', Buffer.from('checkpoint #43'), fake.auditPublicKey, signature)).toBe(false);
  });

  it('when asked for the public key twice, it calls GetPublicKey once', async () => {
    fakeKms(kms);
    const signer = new KmsRootSigner({ client, keyId: AUDIT_KEY_ARN });
    await signer.publicKeyPem();
    await signer.publicKeyPem();
    expect(kms.commandCalls(GetPublicKeyCommand)).toHaveLength(1);
  });

  it('when the key is not an ECC_NIST_P256 signing key, it refuses it', async () => {
    kms
      .on(GetPublicKeyCommand)
      .resolves({ KeyId: AUDIT_KEY_ARN, KeySpec: 'RSA_2048', KeyUsage: 'SIGN_VERIFY' });
    await expect(new KmsRootSigner({ client, keyId: AUDIT_KEY_ARN }).publicKeyPem()).rejects.toBeInstanceOf(
      ConfigError,
    );
  });

  it('when KMS cannot sign (key disabled), it answers 503', async () => {
    kms.on(SignCommand).rejects(new DisabledException({ message: 'x', $metadata: {} }));
    await expect(
      new KmsRootSigner({ client, keyId: AUDIT_KEY_ARN }).sign(Buffer.from('m')),
    ).rejects.toBeInstanceOf(KeyStoreUnavailableError);
  });
});
