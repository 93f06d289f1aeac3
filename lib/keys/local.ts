import {
  createCipheriv,
  createDecipheriv,
  createHash,
  generateKeyPairSync,
  randomBytes,
  sign,
} from 'node:crypto';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeFields } from '../crypto/canonical.js';
import { IntegrityError } from '../errors.js';
import type { DataKey, EncryptionContext, KeyProvider, RootSigner, WrappedKey } from './provider.js';

const IV_BYTES = 12;
const TAG_BYTES = 16;

function contextAad(keyId: string, context: EncryptionContext): Buffer {
  const entries = Object.entries(context).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return encodeFields('coffer/local-wrap/v1', [keyId, ...entries.flat()]);
}

/**
 * Wraps 32 bytes under a ring key (AES-256-GCM, the key id and the context as AAD): iv ‖ ct ‖ tag.
 * The one format of the local ring, whether it wraps data keys directly or branch keys.
 */
export function ringWrap(
  key: Buffer,
  keyId: string,
  plaintext: Uint8Array,
  context: EncryptionContext,
): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(contextAad(keyId, context));
  return Buffer.concat([iv, cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** Opens what ringWrap made; anything else (no such key, a wrong context, tampering) is an IntegrityError. */
export function ringUnwrap(
  keys: ReadonlyMap<string, Buffer>,
  wrapped: WrappedKey,
  context: EncryptionContext,
): Buffer {
  const key = keys.get(wrapped.keyId);
  const bytes = Buffer.from(wrapped.wrapped);
  if (!key || bytes.length !== IV_BYTES + 32 + TAG_BYTES) throw new IntegrityError();
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, IV_BYTES), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(contextAad(wrapped.keyId, context));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    return Buffer.concat([
      decipher.update(bytes.subarray(IV_BYTES, bytes.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    throw new IntegrityError();
  }
}

export function keyIdOf(key: Uint8Array): string {
  return `local:${createHash('sha256').update('coffer/local-key-id').update(key).digest('hex').slice(0, 16)}`;
}

/**
 * A software KeyProvider for the local server and tests: root keys are 32-byte files (mode 0600)
 * in `<dataDir>/keys/`. The newest wraps new data keys; older ones still unwrap what they wrapped,
 * so rotation is adding a key and re-wrapping. The context is bound as AAD, like KMS does.
 */
export class LocalKeyProvider implements KeyProvider {
  readonly name = 'local';
  readonly keyId: string;
  private readonly keys: Map<string, Buffer>;

  constructor(rootKeys: readonly Uint8Array[]) {
    if (rootKeys.length === 0) throw new Error('LocalKeyProvider needs at least one root key');
    this.keys = new Map();
    for (const key of rootKeys) {
      if (key.length !== 32) throw new Error('local root keys are 32 bytes');
      this.keys.set(keyIdOf(key), Buffer.from(key));
    }
    this.keyId = keyIdOf(rootKeys[rootKeys.length - 1] as Uint8Array);
  }

  /** Loads the key ring from `<dataDir>/keys/`, creating the first root key if there is none. */
  static async open(dataDir: string): Promise<LocalKeyProvider> {
    const dir = join(dataDir, 'keys');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    let files = (await readdir(dir)).filter((f) => /^root-\d{4}\.key$/.test(f)).sort();
    if (files.length === 0) {
      await writeFile(join(dir, 'root-0001.key'), randomBytes(32), { mode: 0o600, flag: 'wx' });
      files = ['root-0001.key'];
    }
    const keys = await Promise.all(files.map((f) => readFile(join(dir, f))));
    return new LocalKeyProvider(keys);
  }

  /** Adds a new root key to the data dir's ring; new data keys are wrapped under it. */
  static async rotate(dataDir: string): Promise<string> {
    const dir = join(dataDir, 'keys');
    const files = (await readdir(dir)).filter((f) => /^root-\d{4}\.key$/.test(f)).sort();
    const next = files.length + 1;
    const key = randomBytes(32);
    await writeFile(join(dir, `root-${String(next).padStart(4, '0')}.key`), key, { mode: 0o600, flag: 'wx' });
    return keyIdOf(key);
  }

  async generateDataKey(context: EncryptionContext): Promise<DataKey> {
    const plaintext = randomBytes(32);
    const wrapped = this.wrap(plaintext, this.keyId, context);
    return { plaintext, wrapped, keyId: this.keyId };
  }

  async decryptDataKey(wrapped: WrappedKey, context: EncryptionContext): Promise<Uint8Array> {
    return ringUnwrap(this.keys, wrapped, context);
  }

  async reEncrypt(wrapped: WrappedKey, context: EncryptionContext): Promise<WrappedKey> {
    const plaintext = Buffer.from(await this.decryptDataKey(wrapped, context));
    try {
      return { wrapped: this.wrap(plaintext, this.keyId, context), keyId: this.keyId };
    } finally {
      plaintext.fill(0);
    }
  }

  private wrap(plaintext: Uint8Array, keyId: string, context: EncryptionContext): Buffer {
    return ringWrap(this.keys.get(keyId) as Buffer, keyId, plaintext, context);
  }
}

/** The local root audit key: Ed25519, private key in `<dataDir>/keys/audit-root.pem` (0600). */
export class LocalRootSigner implements RootSigner {
  readonly algorithm = 'Ed25519';
  readonly keyId: string;

  private constructor(
    private readonly privateKeyPem: string,
    private readonly publicPem: string,
  ) {
    this.keyId = `local-audit:${createHash('sha256').update(publicPem).digest('hex').slice(0, 16)}`;
  }

  static async open(dataDir: string): Promise<LocalRootSigner> {
    const dir = join(dataDir, 'keys');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const privPath = join(dir, 'audit-root.pem');
    const pubPath = join(dir, 'audit-root.pub.pem');
    try {
      return new LocalRootSigner(await readFile(privPath, 'utf8'), await readFile(pubPath, 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const { privateKey, publicKey } = generateKeyPairSync('ed25519', {
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    await writeFile(privPath, privateKey, { mode: 0o600, flag: 'wx' });
    await writeFile(pubPath, publicKey, { mode: 0o644 });
    await chmod(privPath, 0o600);
    return new LocalRootSigner(privateKey, publicKey);
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    return sign(null, message, this.privateKeyPem);
  }

  async publicKeyPem(): Promise<string> {
    return this.publicPem;
  }
}
