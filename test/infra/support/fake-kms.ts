import {
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHmac,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import {
  DecryptCommand,
  type DecryptCommandInput,
  GenerateDataKeyCommand,
  type GenerateDataKeyCommandInput,
  GenerateMacCommand,
  type GenerateMacCommandInput,
  GetPublicKeyCommand,
  type GetPublicKeyCommandInput,
  InvalidCiphertextException,
  type KMSClient,
  NotFoundException,
  ReEncryptCommand,
  type ReEncryptCommandInput,
  SignCommand,
  type SignCommandInput,
} from '@aws-sdk/client-kms';
import type { AwsClientStub } from 'aws-sdk-client-mock';

/*
 * A behavioural stand-in for KMS behind aws-sdk-client-mock (there is no local KMS engine): symmetric
 * keys wrap with AES-256-GCM bound to the key ARN and the encryption context, so a wrong context or
 * altered blob fails like KMS does (InvalidCiphertextException); the ECC key signs a given digest
 * with raw ECDSA (like KMS with MessageType DIGEST), so node:crypto verifies it over the message;
 * the HMAC key answers GenerateMac with HMAC-SHA256 under a random key.
 */

export const ACCOUNT = '111122223333';
export const REGION = 'eu-west-1';
export const DATA_KEY_ARN = `arn:aws:kms:${REGION}:${ACCOUNT}:key/0b7c1e0e-1111-4d6a-9c1e-000000000001`;
export const OTHER_KEY_ARN = `arn:aws:kms:${REGION}:${ACCOUNT}:key/0b7c1e0e-1111-4d6a-9c1e-000000000002`;
export const AUDIT_KEY_ARN = `arn:aws:kms:${REGION}:${ACCOUNT}:key/mrk-0b7c1e0e11114d6a9c1e000000000003`;
export const HMAC_KEY_ARN = `arn:aws:kms:${REGION}:${ACCOUNT}:key/0b7c1e0e-1111-4d6a-9c1e-000000000004`;

const P256_N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');

function bigOf(bytes: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);
}

function modInverse(a: bigint, m: bigint): bigint {
  let [r0, r1] = [((a % m) + m) % m, m];
  let [s0, s1] = [1n, 0n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1] = [r1, r0 - q * r1];
    [s0, s1] = [s1, s0 - q * s1];
  }
  return ((s0 % m) + m) % m;
}

function derInteger(n: bigint): Buffer {
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let bytes = Buffer.from(hex, 'hex');
  if ((bytes[0] as number) & 0x80) bytes = Buffer.concat([Buffer.from([0]), bytes]);
  return Buffer.concat([Buffer.from([0x02, bytes.length]), bytes]);
}

/** Raw ECDSA P-256 over a precomputed digest; k·G comes from node's ECDH. DER-encoded like KMS. */
function signDigest(privateKey: KeyObject, digest: Uint8Array): Buffer {
  const d = bigOf(Buffer.from(privateKey.export({ format: 'jwk' }).d as string, 'base64url'));
  const z = bigOf(digest);
  for (;;) {
    const k = (bigOf(randomBytes(40)) % (P256_N - 1n)) + 1n;
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(Buffer.from(k.toString(16).padStart(64, '0'), 'hex'));
    const point = ecdh.getPublicKey();
    const r = bigOf(point.subarray(1, 33)) % P256_N;
    const s = (modInverse(k, P256_N) * (z + r * d)) % P256_N;
    if (r === 0n || s === 0n) continue;
    const body = Buffer.concat([derInteger(r), derInteger(s)]);
    return Buffer.concat([Buffer.from([0x30, body.length]), body]);
  }
}

function aad(keyArn: string, context: Record<string, string> | undefined): Buffer {
  const sorted = Object.entries(context ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  return Buffer.from(JSON.stringify([keyArn, sorted]));
}

export interface FakeKms {
  /** The audit key's public key, as a verifier would get it out of band. */
  readonly auditPublicKey: KeyObject;
  /** How many data keys were generated. */
  generated(): number;
}

/** KMS's operations over plain command inputs; failures are the SDK's exception classes. */
export interface KmsEngine extends FakeKms {
  readonly operations: {
    GenerateDataKey(input: GenerateDataKeyCommandInput): Record<string, unknown>;
    Decrypt(input: DecryptCommandInput): Record<string, unknown>;
    ReEncrypt(input: ReEncryptCommandInput): Record<string, unknown>;
    Sign(input: SignCommandInput): Record<string, unknown>;
    GenerateMac(input: GenerateMacCommandInput): Record<string, unknown>;
    GetPublicKey(input: GetPublicKeyCommandInput): Record<string, unknown>;
  };
}

const notFound = () => new NotFoundException({ message: 'key not found', $metadata: {} });

/** A behavioural KMS for the given symmetric keys, one ECC audit key and one HMAC key. */
export function kmsEngine(symmetricKeyArns: readonly string[] = [DATA_KEY_ARN]): KmsEngine {
  const keys = new Map(symmetricKeyArns.map((arn) => [arn, randomBytes(32)]));
  const audit = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const macKey = randomBytes(32);
  let generated = 0;

  const keyFor = (keyId: string | undefined): Buffer => {
    const key = keyId ? keys.get(keyId) : undefined;
    if (!key) throw notFound();
    return key;
  };
  const wrap = (arn: string, plaintext: Uint8Array, context: Record<string, string> | undefined) => {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', keyFor(arn), iv);
    cipher.setAAD(aad(arn, context));
    return new Uint8Array(Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]));
  };
  const unwrap = (
    arn: string | undefined,
    blob: Uint8Array | undefined,
    context?: Record<string, string>,
  ) => {
    const key = keyFor(arn);
    const bytes = Buffer.from(blob ?? []);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12));
      decipher.setAAD(aad(arn as string, context));
      decipher.setAuthTag(bytes.subarray(bytes.length - 16));
      return Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - 16)), decipher.final()]);
    } catch {
      throw new InvalidCiphertextException({ message: 'invalid ciphertext', $metadata: {} });
    }
  };

  return {
    auditPublicKey: audit.publicKey,
    generated: () => generated,
    operations: {
      GenerateDataKey(input) {
        const arn = input.KeyId as string;
        const plaintext = randomBytes(32);
        const CiphertextBlob = wrap(arn, plaintext, input.EncryptionContext);
        generated++;
        return { KeyId: arn, Plaintext: new Uint8Array(plaintext), CiphertextBlob };
      },
      Decrypt: (input) => ({
        KeyId: input.KeyId,
        Plaintext: new Uint8Array(unwrap(input.KeyId, input.CiphertextBlob, input.EncryptionContext)),
      }),
      ReEncrypt(input) {
        const plaintext = unwrap(input.SourceKeyId, input.CiphertextBlob, input.SourceEncryptionContext);
        const arn = input.DestinationKeyId as string;
        return {
          KeyId: arn,
          SourceKeyId: input.SourceKeyId,
          CiphertextBlob: wrap(arn, plaintext, input.DestinationEncryptionContext),
        };
      },
      Sign(input) {
        if (input.KeyId !== AUDIT_KEY_ARN) throw notFound();
        if (input.MessageType !== 'DIGEST' || input.SigningAlgorithm !== 'ECDSA_SHA_256') {
          throw new Error('the fake signs digests with ECDSA_SHA_256 only');
        }
        return {
          KeyId: AUDIT_KEY_ARN,
          Signature: new Uint8Array(signDigest(audit.privateKey, input.Message as Uint8Array)),
        };
      },
      GenerateMac(input) {
        if (input.KeyId !== HMAC_KEY_ARN) throw notFound();
        return {
          KeyId: HMAC_KEY_ARN,
          MacAlgorithm: input.MacAlgorithm,
          Mac: new Uint8Array(
            createHmac('sha256', macKey)
              .update(input.Message as Uint8Array)
              .digest(),
          ),
        };
      },
      GetPublicKey(input) {
        if (input.KeyId !== AUDIT_KEY_ARN) throw notFound();
        return {
          KeyId: AUDIT_KEY_ARN,
          KeySpec: 'ECC_NIST_P256',
          KeyUsage: 'SIGN_VERIFY',
          SigningAlgorithms: ['ECDSA_SHA_256'],
          PublicKey: new Uint8Array(audit.publicKey.export({ format: 'der', type: 'spki' })),
        };
      },
    },
  };
}

/**
 * Makes `mock` (a mockClient(KMSClient)) behave like KMS for the given symmetric keys and one ECC
 * audit key. Call after `mock.reset()`. Pass `engine` to keep the same keys across resets (items
 * MAC'd or signed in one test still verify in the next).
 */
export function fakeKms(
  mock: AwsClientStub<KMSClient>,
  symmetricKeyArns: readonly string[] = [DATA_KEY_ARN],
  engine: KmsEngine = kmsEngine(symmetricKeyArns),
): FakeKms {
  const op = engine.operations;
  mock
    .on(GenerateDataKeyCommand)
    .callsFake((input: GenerateDataKeyCommandInput) => op.GenerateDataKey(input));
  mock.on(DecryptCommand).callsFake((input: DecryptCommandInput) => op.Decrypt(input));
  mock.on(ReEncryptCommand).callsFake((input: ReEncryptCommandInput) => op.ReEncrypt(input));
  mock.on(SignCommand).callsFake((input: SignCommandInput) => op.Sign(input));
  mock.on(GenerateMacCommand).callsFake((input: GenerateMacCommandInput) => op.GenerateMac(input));
  mock.on(GetPublicKeyCommand, { KeyId: AUDIT_KEY_ARN }).resolves(op.GetPublicKey({ KeyId: AUDIT_KEY_ARN }));
  return { auditPublicKey: engine.auditPublicKey, generated: engine.generated };
}
