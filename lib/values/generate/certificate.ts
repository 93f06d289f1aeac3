// Must come first: @peculiar/x509 checks for these functions as it loads.
import './reflect-shim.js';
import { createPrivateKey, createPublicKey, type KeyObject, randomBytes, webcrypto } from 'node:crypto';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  type Extension,
  type JsonGeneralName,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  X509Certificate,
  X509CertificateGenerator,
} from '@peculiar/x509';

type CryptoKeyPair = webcrypto.CryptoKeyPair;
type ImportAlgorithm =
  | webcrypto.AlgorithmIdentifier
  | webcrypto.RsaHashedImportParams
  | webcrypto.EcKeyImportParams;
type SignAlgorithm = webcrypto.Algorithm | webcrypto.EcdsaParams | webcrypto.RsaHashedImportParams;

import { type CertificateInfo, certificateInfo } from './certificate-info.js';
import type { ResolvedCertificateRequest } from './certificate-spec.js';
import { generateKeyPairPem, type KeyAlgorithm, keyAlgorithmOf } from './keypair.js';

/*
 * X.509 certificates, built with @peculiar/x509 over node's WebCrypto: no ASN.1 is written here.
 * Loaded only on the certificate generation path (the service imports it dynamically), so neither
 * the library nor its dependencies are evaluated on a cold start that generates nothing.
 */

const subtle = webcrypto.subtle;
/** The WebCrypto @peculiar/x509 signs with: node's own. */
const provider = webcrypto as unknown as Parameters<typeof X509CertificateGenerator.create>[1];
/** Allowed clock skew: a certificate is valid from a few minutes before it was made. */
const BACKDATE_MS = 5 * 60 * 1000;

/** The PEM material of an issuing CA, read by the server after `issue` was allowed. */
export interface IssuerMaterial {
  readonly certificate: string;
  readonly privateKey: string;
  /** The CA's own chain (empty for a root). */
  readonly chain: string;
}

/** The stored value of a certificate secret, and what may be said about it. */
export interface GeneratedCertificate {
  readonly certificate: string;
  readonly privateKey: string;
  /** The issuing CA's certificate and its chain, PEM, leaf's issuer first; empty when self-signed. */
  readonly chain: string;
  readonly info: CertificateInfo;
}

interface WebAlgorithms {
  readonly importPrivate: ImportAlgorithm;
  readonly sign: SignAlgorithm;
}

function webAlgorithms(algorithm: KeyAlgorithm): WebAlgorithms {
  switch (algorithm) {
    case 'ed25519':
      return { importPrivate: { name: 'Ed25519' }, sign: { name: 'Ed25519' } };
    case 'ecdsa-p256':
      return {
        importPrivate: { name: 'ECDSA', namedCurve: 'P-256' },
        sign: { name: 'ECDSA', hash: 'SHA-256' },
      };
    case 'rsa-3072':
    case 'rsa-4096': {
      const rsa = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
      return { importPrivate: rsa, sign: rsa };
    }
  }
}

async function webKeys(algorithm: KeyAlgorithm, privateKey: KeyObject): Promise<CryptoKeyPair> {
  const alg = webAlgorithms(algorithm).importPrivate;
  const publicKey = createPublicKey(privateKey);
  return {
    privateKey: await subtle.importKey(
      'pkcs8',
      privateKey.export({ type: 'pkcs8', format: 'der' }),
      alg,
      false,
      ['sign'],
    ),
    publicKey: await subtle.importKey('spki', publicKey.export({ type: 'spki', format: 'der' }), alg, true, [
      'verify',
    ]),
  };
}

function subjectName(req: ResolvedCertificateRequest): Record<string, string[]>[] {
  return [
    { CN: [req.commonName] },
    ...(req.organization !== undefined ? [{ O: [req.organization] }] : []),
    ...(req.organizationalUnit !== undefined ? [{ OU: [req.organizationalUnit] }] : []),
  ];
}

function altNames(req: ResolvedCertificateRequest): JsonGeneralName[] {
  return [
    ...req.sans.dns.map((value) => ({ type: 'dns' as const, value })),
    ...req.sans.ip.map((value) => ({ type: 'ip' as const, value })),
    ...req.sans.uri.map((value) => ({ type: 'url' as const, value })),
    ...req.sans.email.map((value) => ({ type: 'email' as const, value })),
  ];
}

/** A positive 127-bit serial (RFC 5280: at most 20 octets, unpredictable per CA/B Forum). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] as number) & 0x7f) | 0x40;
  return bytes.toString('hex');
}

/**
 * A new key and certificate. With `issuer` the certificate is signed by that CA's key (the caller
 * has checked that it is a CA and that its limits allow the request); without, it is self-signed.
 * `ca` makes a CA certificate: basicConstraints CA (critical), keyCertSign and cRLSign.
 */
export async function generateCertificate(
  req: ResolvedCertificateRequest,
  issuer: IssuerMaterial | undefined,
  now: Date = new Date(),
): Promise<GeneratedCertificate> {
  const pair = await generateKeyPairPem(req.algorithm);
  const keys = await webKeys(req.algorithm, createPrivateKey(pair.privateKey));
  const notBefore = new Date(Math.floor((now.getTime() - BACKDATE_MS) / 1000) * 1000);
  const notAfter = new Date(Math.floor(now.getTime() / 1000) * 1000 + req.validityDays * 86_400_000);

  const usages = req.ca
    ? KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign | KeyUsageFlags.digitalSignature
    : KeyUsageFlags.digitalSignature | (req.algorithm.startsWith('rsa') ? KeyUsageFlags.keyEncipherment : 0);
  const extensions: Extension[] = [
    new BasicConstraintsExtension(req.ca, undefined, true),
    new KeyUsagesExtension(usages, true),
    await SubjectKeyIdentifierExtension.create(keys.publicKey, false, provider),
  ];
  if (!req.ca) {
    extensions.push(
      new ExtendedKeyUsageExtension([ExtendedKeyUsage.serverAuth, ExtendedKeyUsage.clientAuth]),
    );
  }
  const sans = altNames(req);
  if (sans.length > 0) extensions.push(new SubjectAlternativeNameExtension(sans));

  let cert: X509Certificate;
  if (issuer === undefined) {
    cert = await X509CertificateGenerator.createSelfSigned(
      {
        serialNumber: serialNumber(),
        name: subjectName(req),
        notBefore,
        notAfter,
        signingAlgorithm: webAlgorithms(req.algorithm).sign,
        keys,
        extensions,
      },
      provider,
    );
  } else {
    const caCert = new X509Certificate(issuer.certificate);
    const caKey = createPrivateKey(issuer.privateKey);
    const caAlgorithm = keyAlgorithmOf(caKey);
    if (caAlgorithm === undefined) throw new TypeError('the CA key is of an algorithm Coffer does not use');
    const caKeys = await webKeys(caAlgorithm, caKey);
    extensions.push(await AuthorityKeyIdentifierExtension.create(caKeys.publicKey, false, provider));
    cert = await X509CertificateGenerator.create(
      {
        serialNumber: serialNumber(),
        subject: subjectName(req),
        issuer: caCert.subjectName,
        notBefore,
        notAfter,
        signingAlgorithm: webAlgorithms(caAlgorithm).sign,
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        extensions,
      },
      provider,
    );
  }
  const certificate = cert.toString('pem');
  const chain = issuer === undefined ? '' : joinPem(issuer.certificate, issuer.chain);
  return { certificate, privateKey: pair.privateKey, chain, info: certificateInfo(certificate) };
}

/** PEM blocks one after another, each ending in a newline. */
function joinPem(...blocks: string[]): string {
  return blocks
    .map((b) => b.trim())
    .filter((b) => b !== '')
    .map((b) => `${b}\n`)
    .join('');
}
