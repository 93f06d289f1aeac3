import { createHash, generateKeyPair, type KeyObject } from 'node:crypto';

import { KEY_ALGORITHMS, type KeyAlgorithm } from '../../../packages/client/src/contract.js';

/** The key algorithms Coffer generates (keypairs and certificate keys): the wire contract's. */
export { KEY_ALGORITHMS, type KeyAlgorithm };

/** A generated key pair, PEM: PKCS#8 private key, SPKI public key. */
export interface GeneratedKeyPair {
  readonly algorithm: KeyAlgorithm;
  readonly privateKey: string;
  readonly publicKey: string;
}

/** What may be said about a key pair without its private half. */
export interface PublicKeyInfo {
  readonly algorithm: KeyAlgorithm;
  readonly publicKey: string;
  /** SHA-256 of the DER SubjectPublicKeyInfo, hex. */
  readonly fingerprint: string;
}

/**
 * A new key pair from node:crypto (OpenSSL). Asynchronous: an RSA-4096 key takes long enough that
 * generating it on the event loop would stall every other request of the process.
 */
export async function generateKeyPairPem(algorithm: KeyAlgorithm): Promise<GeneratedKeyPair> {
  const encoding = {
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  } as const;
  const pair = await new Promise<{ publicKey: string; privateKey: string }>((resolve, reject) => {
    const done = (err: Error | null, publicKey: string, privateKey: string) =>
      err ? reject(err) : resolve({ publicKey, privateKey });
    switch (algorithm) {
      case 'ed25519':
        generateKeyPair('ed25519', encoding, done);
        break;
      case 'ecdsa-p256':
        generateKeyPair('ec', { namedCurve: 'P-256', ...encoding }, done);
        break;
      case 'rsa-3072':
      case 'rsa-4096':
        generateKeyPair(
          'rsa',
          { modulusLength: algorithm === 'rsa-3072' ? 3072 : 4096, publicExponent: 0x10001, ...encoding },
          done,
        );
        break;
    }
  });
  return { algorithm, privateKey: pair.privateKey, publicKey: pair.publicKey };
}

/** The Coffer name of a key's algorithm, or undefined for a key Coffer does not generate. */
export function keyAlgorithmOf(key: KeyObject): KeyAlgorithm | undefined {
  const details = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case 'ed25519':
      return 'ed25519';
    case 'ec':
      return details?.namedCurve === 'prime256v1' || details?.namedCurve === 'P-256'
        ? 'ecdsa-p256'
        : undefined;
    case 'rsa':
      return details?.modulusLength === 3072
        ? 'rsa-3072'
        : details?.modulusLength === 4096
          ? 'rsa-4096'
          : undefined;
    default:
      return undefined;
  }
}

/** SHA-256 of a public key's DER SubjectPublicKeyInfo, hex. */
export function publicKeyFingerprint(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex');
}

/** The public half of a key pair, as metadata. */
export function publicKeyInfo(algorithm: KeyAlgorithm, publicKey: KeyObject): PublicKeyInfo {
  return {
    algorithm,
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    fingerprint: publicKeyFingerprint(publicKey),
  };
}
