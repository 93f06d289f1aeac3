import { createHash, X509Certificate } from 'node:crypto';
import { type MtlsConfig, normalizeFingerprint, normalizeSerial } from '../config-file.js';
import { ConfigError } from '../errors.js';
import { AuthRefusal } from './bearer.js';
import {
  children,
  DerError,
  decodeOid,
  decodeString,
  decodeTime,
  expectTag,
  readTlv,
  TAG,
  type Tlv,
} from './der.js';
import type { ApiGatewayClientCert, ClientCertificateInput, Principal } from './principal.js';

export type { ApiGatewayClientCert, ClientCertificateInput };

import { globMatches } from './workload.js';
import { escapeIdValue } from './workload-id.js';

/** The id prefix of certificate workloads (no workload mapping may use it). */
export const CERT_ID_PREFIX = 'cert';

const OID = {
  subjectAltName: '2.5.29.17',
  extKeyUsage: '2.5.29.37',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

/** Short names of DN attributes, as RFC 4514 and `openssl -nameopt RFC2253` print them. */
const ATTRIBUTE_NAMES: Readonly<Record<string, string>> = {
  '2.5.4.3': 'CN',
  '2.5.4.4': 'SN',
  '2.5.4.5': 'serialNumber',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.9': 'street',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
  '2.5.4.12': 'title',
  '2.5.4.17': 'postalCode',
  '2.5.4.42': 'GN',
  '2.5.4.46': 'dnQualifier',
  '2.5.4.65': 'pseudonym',
  '0.9.2342.19200300.100.1.1': 'UID',
  '0.9.2342.19200300.100.1.25': 'DC',
  '1.2.840.113549.1.9.1': 'emailAddress',
};

/** Client certificates larger than this are refused before parsing. */
const MAX_CERT_BYTES = 16 * 1024;
/** More SANs than this is not a client certificate anyone issues on purpose. */
const MAX_SANS = 64;

export type SanKind = 'dns' | 'uri' | 'email' | 'ip' | 'other';

export interface SubjectAltName {
  readonly kind: SanKind;
  /** The name as text (`other` SANs: the hex of their DER). */
  readonly value: string;
}

/** What identifies a client certificate, read from its DER. */
export interface ClientCertificateFacts {
  /** RFC 4514 (most specific RDN first, specials escaped). */
  readonly issuer: string;
  readonly subject: string;
  readonly subjectCN?: string;
  /** Upper-case hex without leading zeros. */
  readonly serial: string;
  /** SHA-256 of the DER, `AB:CD:…`. */
  readonly fingerprint: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly sans: readonly SubjectAltName[];
  /** Extended key usage OIDs; undefined when the certificate has no such extension. */
  readonly extKeyUsage?: readonly string[];
  readonly isCa: boolean;
}

/** RFC 4514 §2.4: escape the specials, a leading `#` or space, a trailing space, control characters. */
function escapeDnValue(value: string): string {
  let out = '';
  const chars = [...value];
  chars.forEach((ch, i) => {
    const code = ch.codePointAt(0) as number;
    if (code < 0x20 || code === 0x7f) out += `\\${code.toString(16).toUpperCase().padStart(2, '0')}`;
    else if ('"+,;<>\\'.includes(ch)) out += `\\${ch}`;
    else if ((i === 0 && (ch === '#' || ch === ' ')) || (i === chars.length - 1 && ch === ' '))
      out += `\\${ch}`;
    else out += ch;
  });
  return out;
}

/** A Name as an RFC 4514 string, and its last CN. */
function decodeName(tlv: Tlv): { text: string; cn?: string } {
  expectTag(tlv, TAG.sequence);
  let cn: string | undefined;
  const rdns = children(tlv).map((rdn) => {
    expectTag(rdn, TAG.set);
    return children(rdn)
      .map((atv) => {
        const [type, value] = children(expectTag(atv, TAG.sequence));
        const oid = decodeOid(type as Tlv);
        if (!value) throw new DerError('attribute without value');
        const name = ATTRIBUTE_NAMES[oid];
        const text = name ? decodeString(value) : undefined;
        if (oid === '2.5.4.3' && text !== undefined) cn = text;
        // RFC 4514 §2.4: types without a short name, or values that are not strings, as #hex of their DER.
        return `${name ?? oid}=${text === undefined ? `#${value.raw.toString('hex')}` : escapeDnValue(text)}`;
      })
      .join('+');
  });
  return { text: rdns.reverse().join(','), ...(cn !== undefined ? { cn } : {}) };
}

function ipText(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
    // The WHATWG URL parser writes the canonical (RFC 5952) form.
    return new URL(`http://[${groups.join(':')}]`).hostname.slice(1, -1);
  }
  throw new DerError('bad IP SAN');
}

function decodeSans(extnValue: Buffer): SubjectAltName[] {
  const names = children(expectTag(readTlv(extnValue).tlv, TAG.sequence));
  if (names.length > MAX_SANS) throw new DerError('too many SANs');
  return names.map((n): SubjectAltName => {
    switch (n.tag) {
      case 0x81:
        return { kind: 'email', value: n.content.toString('latin1') };
      case 0x82:
        return { kind: 'dns', value: n.content.toString('latin1') };
      case 0x86:
        return { kind: 'uri', value: n.content.toString('latin1') };
      case 0x87:
        return { kind: 'ip', value: ipText(n.content) };
      default:
        return { kind: 'other', value: n.raw.toString('hex') };
    }
  });
}

const toDer = (input: X509Certificate | string | Buffer): Buffer => {
  if (input instanceof X509Certificate) return input.raw;
  if (Buffer.isBuffer(input)) return input;
  // PEM: one certificate; new X509Certificate checks the armour and the outer structure.
  return new X509Certificate(input).raw;
};

/**
 * Reads the identifying facts of a certificate (X509Certificate, PEM text or DER bytes). Throws on
 * anything malformed; verifies nothing (that is the TLS layer's job, or API Gateway's).
 */
export function certificateFacts(input: X509Certificate | string | Buffer): ClientCertificateFacts {
  const der = toDer(input);
  if (der.length > MAX_CERT_BYTES) throw new DerError('certificate too large');
  const x509 = input instanceof X509Certificate ? input : new X509Certificate(der);
  const { tlv: cert, next } = readTlv(der);
  if (next !== der.length) throw new DerError('trailing bytes');
  const tbs = children(expectTag(children(expectTag(cert, TAG.sequence))[0], TAG.sequence));
  let i = tbs[0]?.tag === 0xa0 ? 1 : 0;
  const serialBytes = expectTag(tbs[i++], TAG.integer).content;
  i++; // signature algorithm
  const issuer = decodeName(tbs[i++] as Tlv);
  const [notBefore, notAfter] = children(expectTag(tbs[i++], TAG.sequence)).map(decodeTime);
  const subject = decodeName(tbs[i++] as Tlv);
  let sans: SubjectAltName[] = [];
  let extKeyUsage: string[] | undefined;
  const extensions = tbs.find((t) => t.tag === 0xa3);
  if (extensions) {
    const seen = new Set<string>();
    for (const ext of children(expectTag(children(extensions)[0], TAG.sequence))) {
      const parts = children(expectTag(ext, TAG.sequence));
      const oid = decodeOid(parts[0] as Tlv);
      // RFC 5280 §4.2: a certificate must not include an extension more than once.
      if (seen.has(oid)) throw new DerError('duplicate extension');
      seen.add(oid);
      const value = expectTag(parts[parts.length - 1], TAG.octetString).content;
      if (oid === OID.subjectAltName) sans = decodeSans(value);
      if (oid === OID.extKeyUsage) {
        extKeyUsage = children(expectTag(readTlv(value).tlv, TAG.sequence)).map(decodeOid);
      }
    }
  }
  if (!notBefore || !notAfter) throw new DerError('bad validity');
  const serialHex = serialBytes.toString('hex');
  return {
    issuer: issuer.text,
    subject: subject.text,
    ...(subject.cn !== undefined ? { subjectCN: subject.cn } : {}),
    serial: normalizeSerial(serialHex === '' ? '0' : serialHex),
    fingerprint: (createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g) as string[]).join(
      ':',
    ),
    notBefore,
    notAfter,
    sans,
    ...(extKeyUsage ? { extKeyUsage } : {}),
    isCa: x509.ca,
  };
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: the point is to find them
const CONTROL = /[\u0000-\u001f\u007f]/;

/** The parts of an API Gateway HTTP API (payload 2.0) event that carry a verified client certificate. */
export interface MtlsEventLike {
  readonly requestContext?: {
    readonly authentication?: { readonly clientCert?: ApiGatewayClientCert | null } | null;
  } | null;
}

/**
 * The client certificate API Gateway verified against its truststore, from the event's request
 * context, or undefined. Headers of the event (which the caller controls) never name a certificate.
 *
 * @example
 * const clientCert = clientCertFromEvent(event); // in functions/api.ts, passed on as AuthRequest.clientCertificate
 */
export function clientCertFromEvent(
  event: MtlsEventLike | null | undefined,
): ApiGatewayClientCert | undefined {
  const cert = event?.requestContext?.authentication?.clientCert;
  return typeof cert === 'object' && cert !== null ? cert : undefined;
}

export interface CertificateIdentityOptions {
  /** The `mtls` section of COFFER_CONFIG (allowed SANs, revocations). */
  readonly mtls?: MtlsConfig;
  /** Clock for the validity check (tests). */
  readonly now?: () => Date;
}

/**
 * Turns verified client certificates into workload principals (docs/workload-identity.md):
 * `Workload::"cert:<issuer DN>:<subject DN>"`, kind `certificate`, authMethod `mtls`, with the
 * SANs, serial, fingerprint and subject as tags. Accepts only certificates with the clientAuth
 * extended key usage that are not CAs, are within their validity, are not revoked (issuer + serial
 * or fingerprint) and, when `allowedSans` is configured, whose every SAN matches a pattern. Every
 * refusal is an AuthRefusal (the same 401) with a reason for the log.
 *
 * @example
 * const certs = new CertificateIdentity({ mtls: config.mtls });
 * const principal = certs.principal({ source: 'tls', certificate: socket.getPeerX509Certificate(), verified: socket.authorized });
 */
export class CertificateIdentity {
  private readonly revokedSerials = new Set<string>();
  private readonly revokedFingerprints = new Set<string>();
  private readonly allowedSans: readonly { kind: SanKind; pattern: string }[] | undefined;
  private readonly now: () => Date;

  constructor(options: CertificateIdentityOptions = {}) {
    for (const r of options.mtls?.revoked ?? []) {
      if ('fingerprint' in r) this.revokedFingerprints.add(normalizeFingerprint(r.fingerprint));
      else this.revokedSerials.add(`${r.issuer}\n${normalizeSerial(r.serial)}`);
    }
    this.allowedSans = options.mtls?.allowedSans?.map((p) => {
      const at = p.indexOf(':');
      const kind = p.slice(0, at).toLowerCase() as SanKind;
      const pattern = p.slice(at + 1);
      // DNS names compare without case (RFC 4343); the rest exactly.
      return { kind, pattern: kind === 'dns' ? pattern.toLowerCase() : pattern };
    });
    this.now = options.now ?? (() => new Date());
  }

  /** The principal for a verified client certificate, or an AuthRefusal. */
  principal(input: ClientCertificateInput): Principal {
    if (input.source === 'tls') {
      // Defence in depth: an adapter that passed an unverified peer certificate gets nothing.
      if (!input.verified) throw new AuthRefusal('certificate_not_verified');
      return this.fromFacts(this.facts(input.certificate));
    }
    return this.fromApiGateway(input.clientCert);
  }

  private facts(certificate: X509Certificate | string | Buffer): ClientCertificateFacts {
    try {
      return certificateFacts(certificate);
    } catch {
      throw new AuthRefusal('malformed_certificate');
    }
  }

  private fromApiGateway(clientCert: ApiGatewayClientCert): Principal {
    const pem = clientCert.clientCertPem;
    if (typeof pem !== 'string' || pem.length === 0 || pem.length > 4 * MAX_CERT_BYTES) {
      throw new AuthRefusal('no_client_certificate');
    }
    const facts = this.facts(pem);
    // The PEM is the source of truth; API Gateway's serial (colon hex) must describe the same certificate.
    const serial = clientCert.serialNumber;
    if (
      typeof serial === 'string' &&
      /^[0-9A-Fa-f:]{1,128}$/.test(serial) &&
      normalizeSerial(serial) !== facts.serial
    ) {
      throw new AuthRefusal('certificate_context_mismatch');
    }
    return this.fromFacts(facts);
  }

  private fromFacts(facts: ClientCertificateFacts): Principal {
    const fields = { fingerprint: facts.fingerprint };
    if (facts.isCa) throw new AuthRefusal('certificate_is_ca', fields);
    if (!facts.extKeyUsage?.includes(OID.clientAuth))
      throw new AuthRefusal('certificate_not_for_client_auth', fields);
    const now = this.now().getTime();
    if (now < facts.notBefore.getTime()) throw new AuthRefusal('certificate_not_yet_valid', fields);
    if (now > facts.notAfter.getTime()) throw new AuthRefusal('certificate_expired', fields);
    if (
      this.revokedFingerprints.has(normalizeFingerprint(facts.fingerprint)) ||
      this.revokedSerials.has(`${facts.issuer}\n${facts.serial}`)
    ) {
      throw new AuthRefusal('certificate_revoked', fields);
    }
    for (const san of facts.sans) {
      if (CONTROL.test(san.value)) throw new AuthRefusal('malformed_san', fields);
    }
    if (this.allowedSans) {
      const allowed = (san: SubjectAltName) =>
        (this.allowedSans ?? []).some(
          (p) =>
            p.kind === san.kind &&
            globMatches(p.pattern, san.kind === 'dns' ? san.value.toLowerCase() : san.value),
        );
      if (facts.sans.length === 0 || !facts.sans.every(allowed))
        throw new AuthRefusal('san_not_allowed', fields);
    }
    return {
      type: 'Workload',
      id: `${CERT_ID_PREFIX}:${escapeIdValue(facts.issuer)}:${escapeIdValue(facts.subject)}`,
      groups: [],
      attributes: certificateTags(facts),
      authMethod: 'mtls',
      kind: 'certificate',
      issuer: facts.issuer,
      fingerprint: facts.fingerprint,
      issuedAt: Math.floor(facts.notBefore.getTime() / 1000),
    };
  }
}

/** The tags policies see (docs/workload-identity.md). */
function certificateTags(facts: ClientCertificateFacts): Record<string, string> {
  const tags: Record<string, string> = {
    subject: facts.subject,
    serial: facts.serial,
    fingerprint: facts.fingerprint,
  };
  if (facts.subjectCN !== undefined) tags.subjectCN = facts.subjectCN;
  for (const san of facts.sans) {
    if (san.kind !== 'other') tags[`san:${san.kind}:${san.value}`] = san.value;
  }
  const only = (kind: SanKind) => {
    const values = facts.sans.filter((s) => s.kind === kind);
    return values.length === 1 ? (values[0] as SubjectAltName).value : undefined;
  };
  const dns = only('dns');
  const uri = only('uri');
  if (dns !== undefined) tags.sanDns = dns;
  if (uri !== undefined) tags.sanUri = uri;
  return tags;
}

/**
 * Refuses a client CA bundle in which two CAs have the same subject DN: their certificates'
 * principal ids name the issuer by DN, so such CAs could issue each other's principals.
 * For the local server's start (COFFER_TLS_CLIENT_CA) and the CDK truststore check.
 */
export function assertDistinctCaSubjects(bundlePem: string): void {
  const blocks = bundlePem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new ConfigError('the client CA bundle holds no certificate');
  const seen = new Map<string, string>();
  for (const block of blocks) {
    let facts: ClientCertificateFacts;
    try {
      facts = certificateFacts(block);
    } catch {
      throw new ConfigError('the client CA bundle holds a certificate that cannot be read');
    }
    const other = seen.get(facts.subject);
    if (other !== undefined && other !== facts.fingerprint) {
      throw new ConfigError(
        `the client CA bundle holds two CAs named "${facts.subject.slice(0, 200)}": certificate identities name their issuer by DN, so CA names must be distinct`,
      );
    }
    seen.set(facts.subject, facts.fingerprint);
  }
}
