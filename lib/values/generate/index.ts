import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import type {
  CertificateMetadata,
  GeneratorParams,
  PublicKeyMetadata,
} from '../../../packages/client/src/contract.js';
import { InvalidRequestError, NotACaError } from '../../errors.js';
import type { GeneratedCertificate, IssuerMaterial } from './certificate.js';
import { certificateInfo } from './certificate-info.js';
import {
  type IssuerConstraints,
  type ResolvedCertificateRequest,
  resolveCertificateRequest,
} from './certificate-spec.js';
import {
  generateKeyPairPem,
  KEY_ALGORITHMS,
  type KeyAlgorithm,
  keyAlgorithmOf,
  publicKeyInfo,
} from './keypair.js';
import { generatePassword, type ResolvedPasswordPolicy, resolvePasswordPolicy } from './password.js';

/*
 * Server-side generation: a request's parameters checked and completed (what is kept in the head,
 * so that a rotation can generate the same kind of value again), the value made, and what may be
 * said about it. The X.509 library is imported only when a certificate is made.
 */

export type ResolvedGenerator =
  | ({ readonly type: 'password' } & ResolvedPasswordPolicy)
  | { readonly type: 'keypair'; readonly algorithm: KeyAlgorithm }
  | ({ readonly type: 'certificate' } & ResolvedCertificateRequest);

export type { IssuerMaterial };

/** Checks a generation request's parameters and fills in defaults; anything wrong is a 400. */
export function resolveGenerator(params: GeneratorParams): ResolvedGenerator {
  switch (params.type) {
    case 'password': {
      const { type: _t, ...policy } = params;
      return { type: 'password', ...resolvePasswordPolicy(policy) };
    }
    case 'keypair':
      if (!KEY_ALGORITHMS.includes(params.algorithm)) {
        throw new InvalidRequestError(`unknown key algorithm "${String(params.algorithm)}"`);
      }
      return { type: 'keypair', algorithm: params.algorithm };
    case 'certificate': {
      const { type: _t, ...request } = params;
      return { type: 'certificate', ...resolveCertificateRequest(request) };
    }
    default:
      throw new InvalidRequestError('type must be password, keypair or certificate');
  }
}

/**
 * The stored value of a new secret: a password as it is; a key pair as
 * `{"private_key","public_key"}`; a certificate as `{"certificate","private_key","chain"}` (PEM).
 */
export async function generateValue(
  generator: ResolvedGenerator,
  issuer: IssuerMaterial | undefined,
  now: Date,
): Promise<string> {
  switch (generator.type) {
    case 'password':
      return generatePassword(generator);
    case 'keypair': {
      const pair = await generateKeyPairPem(generator.algorithm);
      return JSON.stringify({ private_key: pair.privateKey, public_key: pair.publicKey });
    }
    case 'certificate': {
      const { generateCertificate } = await import('./x509-generator.js');
      const made: GeneratedCertificate = await generateCertificate(generator, issuer, now);
      return JSON.stringify({
        certificate: made.certificate,
        private_key: made.privateKey,
        chain: made.chain,
      });
    }
  }
}

/** What may be said about a generated value: public key or certificate details, never a secret. */
export function describeValue(
  type: ResolvedGenerator['type'],
  value: string,
): { publicKey?: PublicKeyMetadata; certificate?: CertificateMetadata } {
  if (type === 'password') return {};
  const fields = JSON.parse(value) as Record<string, string>;
  if (type === 'keypair') {
    const publicKey = createPublicKey(fields.public_key as string);
    const algorithm = keyAlgorithmOf(publicKey);
    if (algorithm === undefined) throw new TypeError('a stored key pair of an unknown algorithm');
    return { publicKey: publicKeyInfo(algorithm, publicKey) };
  }
  return { certificate: certificateInfo(fields.certificate as string) };
}

/** The limits a CA's head puts on what it issues (its generator's `allowedNames`, `maxValidityDays`). */
export function issuerConstraints(
  generator: Readonly<Record<string, unknown>> | undefined,
): IssuerConstraints {
  const names = generator?.allowedNames;
  const max = generator?.maxValidityDays;
  return {
    ...(Array.isArray(names)
      ? { allowedNames: names.filter((n): n is string => typeof n === 'string') }
      : {}),
    ...(typeof max === 'number' ? { maxValidityDays: max } : {}),
  };
}

/**
 * A CA secret's value as issuing material: a certificate that is a CA, and the private key that
 * belongs to it. Anything else is 400 `not_a_ca`, in one fixed sentence (nothing of the value).
 */
export function readIssuer(value: string): IssuerMaterial & { readonly notAfter: Date } {
  try {
    const fields = JSON.parse(value) as Record<string, unknown>;
    const { certificate, private_key: privateKey, chain } = fields;
    if (typeof certificate !== 'string' || typeof privateKey !== 'string') throw new NotACaError();
    const cert = new X509Certificate(certificate);
    if (!cert.ca || !cert.checkPrivateKey(createPrivateKey(privateKey))) throw new NotACaError();
    return {
      certificate,
      privateKey,
      chain: typeof chain === 'string' ? chain : '',
      notAfter: new Date(cert.validTo),
    };
  } catch {
    throw new NotACaError();
  }
}
