import { createHash, createPrivateKey, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import {
  CERTIFICATE_FIELDS,
  type CertificateInfo,
  KEYPAIR_FIELDS,
  type KeypairInfo,
  type SecretType,
} from '../../packages/client/src/contract.js';
import { InvalidValueError, KeyMismatchError, ValueNotTextError } from '../errors.js';
import type { TypeInfo } from '../store/records.js';

/*
 * The secret types' rules, checked on every write (docs/api.md, "Types"). Error messages name the
 * type's fixed fields and the rule broken, never a byte of the value nor a field name taken from
 * it: a value may be refused in a response, a log line and an audit record alike.
 */

export type { TypeInfo };

/** Strict: an invalid byte must be refused, never become U+FFFD in a stored text value. */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The bytes as text, or undefined when they are not UTF-8. */
export function utf8Text(bytes: Uint8Array): string | undefined {
  try {
    return UTF8.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * Checks that `bytes` are a valid value of `type`, and derives the metadata the head keeps for it
 * (a keypair's public key; a certificate's names, serial, fingerprint and validity).
 *
 * @example checkValue('json', Buffer.from('{"user":"app"}')) // {}
 */
export function checkValue(type: SecretType, bytes: Uint8Array): TypeInfo {
  if (type === 'binary') return {};
  const text = utf8Text(bytes);
  if (text === undefined) {
    throw new ValueNotTextError(`a ${type} value must be UTF-8 text; write bytes as type binary`);
  }
  switch (type) {
    case 'text':
    case 'password':
      return {};
    case 'json':
      stringFields('json', text);
      return {};
    case 'keypair':
      return { keypair: keypairInfo(stringFields('keypair', text, KEYPAIR_FIELDS)) };
    case 'certificate':
      return { certificate: certificateInfo(stringFields('certificate', text, CERTIFICATE_FIELDS)) };
  }
}

/** The value as a JSON object of string fields, holding at least `required`. */
function stringFields(
  type: SecretType,
  text: string,
  required: readonly string[] = [],
): Readonly<Record<string, string>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new InvalidValueError(`a ${type} value must be a JSON object`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidValueError(`a ${type} value must be a JSON object`);
  }
  for (const name of required) {
    if (!Object.hasOwn(parsed, name))
      throw new InvalidValueError(`a ${type} value needs the field "${name}"`);
  }
  if (Object.values(parsed).some((v) => typeof v !== 'string')) {
    throw new InvalidValueError(`every field of a ${type} value must be a string`);
  }
  return parsed as Record<string, string>;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n[A-Za-z0-9+/=\r\n]+-----END \1-----/g;

/** The PEM blocks of a field, with their labels; the field must hold nothing else. */
function pemBlocks(type: SecretType, field: string, text: string): { label: string; pem: string }[] {
  const blocks = [...text.matchAll(PEM_BLOCK)].map((m) => ({ label: m[1] as string, pem: m[0] }));
  const rest = text.replace(PEM_BLOCK, '').trim();
  if (rest !== '') throw new InvalidValueError(`${type} field "${field}" must hold only PEM`);
  return blocks;
}

/** Exactly one PEM block with one of `labels`. */
function onePem(type: SecretType, field: string, text: string, labels: readonly string[]): string {
  const blocks = pemBlocks(type, field, text);
  const [block] = blocks;
  if (blocks.length !== 1 || !block || !labels.includes(block.label)) {
    throw new InvalidValueError(`${type} field "${field}" must be one PEM ${labels[0]}`);
  }
  return block.pem;
}

const PRIVATE_KEY_LABELS = ['PRIVATE KEY', 'RSA PRIVATE KEY', 'EC PRIVATE KEY'];
const PUBLIC_KEY_LABELS = ['PUBLIC KEY', 'RSA PUBLIC KEY'];

function privateKey(type: SecretType, text: string): KeyObject {
  const pem = onePem(type, 'private_key', text, PRIVATE_KEY_LABELS);
  try {
    return createPrivateKey(pem);
  } catch {
    // An encrypted key (no passphrase here) or a damaged one: both are unusable as stored.
    throw new InvalidValueError(`${type} field "private_key" is not a readable unencrypted private key`);
  }
}

const spki = (key: KeyObject): Buffer => key.export({ type: 'spki', format: 'der' });
const spkiPem = (key: KeyObject): string => String(key.export({ type: 'spki', format: 'pem' }));

function keypairInfo(fields: Readonly<Record<string, string>>): KeypairInfo {
  const priv = privateKey('keypair', fields.private_key as string);
  const pem = onePem('keypair', 'public_key', fields.public_key as string, PUBLIC_KEY_LABELS);
  let pub: KeyObject;
  try {
    pub = createPublicKey(pem);
  } catch {
    throw new InvalidValueError('keypair field "public_key" is not a readable public key');
  }
  if (!spki(createPublicKey(priv)).equals(spki(pub))) {
    throw new KeyMismatchError("the keypair's public key is not its private key's");
  }
  return { publicKey: spkiPem(pub), keyType: String(pub.asymmetricKeyType) };
}

function certificate(field: string, pem: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch {
    throw new InvalidValueError(`certificate field "${field}" holds a certificate that does not parse`);
  }
}

function certificateInfo(fields: Readonly<Record<string, string>>): CertificateInfo {
  const cert = certificate(
    'certificate',
    onePem('certificate', 'certificate', fields.certificate as string, ['CERTIFICATE']),
  );
  for (const block of pemBlocks('certificate', 'chain', fields.chain as string)) {
    if (block.label !== 'CERTIFICATE') {
      throw new InvalidValueError('certificate field "chain" must hold only PEM CERTIFICATE blocks');
    }
    certificate('chain', block.pem);
  }
  const priv = privateKey('certificate', fields.private_key as string);
  if (!cert.checkPrivateKey(priv)) {
    throw new KeyMismatchError("the certificate is not for the value's private key");
  }
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    sans: splitNames(cert.subjectAltName),
    serial: cert.serialNumber.toUpperCase(),
    fingerprint: fingerprint(cert.raw),
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: new Date(cert.validTo).toISOString(),
    ca: cert.ca,
    publicKey: spkiPem(cert.publicKey),
  };
}

/** SHA-256 of the DER, as `AB:CD:…` (what `openssl x509 -fingerprint -sha256` prints). */
function fingerprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)?.join(':') ?? '';
}

/**
 * Node prints SANs as `DNS:a, IP Address:1.2.3.4`, quoting (JSON-style) a name that holds a
 * comma or a quote: split on the separators outside quotes.
 */
export function splitNames(text: string | undefined): string[] {
  if (!text) return [];
  const names: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (ch === '"' && text[i - 1] !== '\\') quoted = !quoted;
    if (!quoted && ch === ',' && text[i + 1] === ' ') {
      names.push(current);
      current = '';
      i++;
      continue;
    }
    current += ch;
  }
  names.push(current);
  return names.filter((n) => n !== '');
}
