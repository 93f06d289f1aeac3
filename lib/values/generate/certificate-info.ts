import { X509Certificate } from 'node:crypto';
import { keyAlgorithmOf } from './keypair.js';

/** What may be said about a certificate: nothing of its private key. */
export interface CertificateInfo {
  readonly subject: string;
  readonly issuer: string;
  /** Hex, upper case, as OpenSSL prints it. */
  readonly serial: string;
  /** SHA-256 of the DER certificate, colon-separated hex. */
  readonly fingerprint: string;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly sans: string[];
  readonly ca: boolean;
  readonly keyAlgorithm?: string;
}

/** Parses a PEM certificate with node:crypto (OpenSSL); throws on anything that is not one. */
export function certificateInfo(pem: string): CertificateInfo {
  const cert = new X509Certificate(pem);
  const algorithm = keyAlgorithmOf(cert.publicKey);
  return {
    subject: cert.subject.split('\n').join(', '),
    issuer: cert.issuer.split('\n').join(', '),
    serial: cert.serialNumber.toUpperCase(),
    fingerprint: cert.fingerprint256,
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: new Date(cert.validTo).toISOString(),
    sans: cert.subjectAltName ? cert.subjectAltName.split(', ') : [],
    ca: cert.ca,
    ...(algorithm ? { keyAlgorithm: algorithm } : {}),
  };
}
