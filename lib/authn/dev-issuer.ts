import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomUUID,
} from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { ConfigError } from '../errors.js';

/** The dev issuer's `iss`: fixed, so tokens survive a change of port. */
export const DEV_ISSUER = 'urn:coffer:dev';
export const DEV_ISSUER_ALIAS = 'dev';
export const DEV_AUDIENCE = 'coffer';
export const DEV_ADMIN_SUBJECT = 'dev-admin';

export interface MintOptions {
  readonly subject: string;
  readonly groups?: readonly string[];
  /** Lifetime in seconds (default one hour). */
  readonly ttlSeconds?: number;
}

/**
 * The local server's built-in OIDC-like issuer: an Ed25519 key in `<dataDir>/keys/dev-issuer.pem`
 * (0600). It signs short JWTs for a subject and groups; its groups map one to one.
 */
export class DevIssuer {
  private constructor(
    private readonly privateKey: KeyObject,
    readonly publicKey: KeyObject,
  ) {}

  /**
   * Opens the data dir's issuer key, creating it unless `create` is false (then a missing key is
   * a ConfigError: a key made on the spot would sign tokens no running server trusts).
   */
  static async open(dataDir: string, options: { create?: boolean } = {}): Promise<DevIssuer> {
    const dir = join(dataDir, 'keys');
    if (options.create === false) {
      try {
        return DevIssuer.fromPem(await readFile(join(dir, 'dev-issuer.pem'), 'utf8'));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        throw new ConfigError(
          `no dev issuer in ${dataDir}: start the local server once (npm start), or set COFFER_DATA_DIR to its data dir`,
        );
      }
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, 'dev-issuer.pem');
    let pem: string;
    try {
      pem = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const { privateKey } = generateKeyPairSync('ed25519', {
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
        publicKeyEncoding: { type: 'spki', format: 'pem' },
      });
      try {
        await writeFile(file, privateKey, { mode: 0o600, flag: 'wx' });
        pem = privateKey;
      } catch (e) {
        // Another process created it first: use theirs.
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        pem = await readFile(file, 'utf8');
      }
    }
    return DevIssuer.fromPem(pem);
  }

  private static fromPem(pem: string): DevIssuer {
    const privateKey = createPrivateKey(pem);
    return new DevIssuer(privateKey, createPublicKey(privateKey));
  }

  async mint(options: MintOptions): Promise<string> {
    const ttl = options.ttlSeconds ?? 3600;
    return new SignJWT({ groups: [...(options.groups ?? [])] })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: 'dev' })
      .setIssuer(DEV_ISSUER)
      .setAudience(DEV_AUDIENCE)
      .setSubject(options.subject)
      .setIssuedAt()
      .setNotBefore('0s')
      .setExpirationTime(`${ttl}s`)
      .setJti(randomUUID())
      .sign(this.privateKey);
  }
}
