import { isIP } from 'node:net';
import { CERTIFICATE_NAMES_MAX, VALIDITY_DAYS } from '../../../packages/client/src/contract.js';
import { InvalidRequestError } from '../../errors.js';
import { KEY_ALGORITHMS, type KeyAlgorithm } from './keypair.js';

/*
 * What a certificate request may ask for, checked before any key is made, and the limits a CA's
 * metadata puts on what it issues. Pure functions: no X.509 library is needed to decide either.
 */

export { VALIDITY_DAYS };

const MAX_NAMES = CERTIFICATE_NAMES_MAX;
/** Subject attribute values: printable characters that need no escaping in any DN syntax. */
const DN_VALUE = /^[A-Za-z0-9 ._*@:()'/-]{1,64}$/;
/** A DNS name (RFC 1123 labels), optionally a wildcard in the left-most label. */
const DNS_NAME =
  /^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const EMAIL =
  /^[A-Za-z0-9._%+-]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
/** A CA name pattern: the characters of the names it matches, and `*`. */
const PATTERN = /^[A-Za-z0-9*._%+@:/-]{1,253}$/;

export interface SubjectAltNames {
  readonly dns?: readonly string[];
  readonly ip?: readonly string[];
  readonly uri?: readonly string[];
  readonly email?: readonly string[];
}

/** A certificate request as the API takes it. */
export interface CertificateRequest {
  /** The key of the new certificate. Default `ecdsa-p256`. */
  readonly algorithm?: KeyAlgorithm;
  readonly commonName: string;
  readonly organization?: string;
  readonly organizationalUnit?: string;
  readonly sans?: SubjectAltNames;
  readonly validityDays: number;
  /** A CA certificate (basicConstraints CA, keyCertSign). */
  readonly ca?: boolean;
  /** The path of the CA certificate secret that issues it; absent: self-signed. */
  readonly issuer?: string;
  /** For a CA: name patterns its leaves' subject CN and SANs must each match (absent: any). */
  readonly allowedNames?: readonly string[];
  /** For a CA: the longest validity, in days, of a certificate it issues. */
  readonly maxValidityDays?: number;
}

/** A request with defaults filled in and every field checked: stored as the generator's parameters. */
export interface ResolvedCertificateRequest {
  readonly algorithm: KeyAlgorithm;
  readonly commonName: string;
  readonly organization?: string;
  readonly organizationalUnit?: string;
  readonly sans: Required<{ [K in keyof SubjectAltNames]: string[] }>;
  readonly validityDays: number;
  readonly ca: boolean;
  readonly issuer?: string;
  readonly allowedNames?: string[];
  readonly maxValidityDays?: number;
}

/** The limits a CA's metadata puts on what it issues. */
export interface IssuerConstraints {
  readonly allowedNames?: readonly string[];
  readonly maxValidityDays?: number;
}

function names(kind: string, list: readonly string[] | undefined, valid: (s: string) => boolean): string[] {
  const out = [...new Set(list ?? [])];
  if (out.length > MAX_NAMES) throw new InvalidRequestError(`at most ${MAX_NAMES} ${kind} names`);
  for (const n of out) {
    if (typeof n !== 'string' || !valid(n))
      throw new InvalidRequestError(`invalid ${kind} name "${String(n).slice(0, 100)}"`);
  }
  return out;
}

function validUri(s: string): boolean {
  if (s.length > 2048 || /[\s<>"{}|\\^`]/.test(s)) return false;
  try {
    const url = new URL(s);
    return url.protocol.length > 1 && url.href.length > 0;
  } catch {
    return false;
  }
}

function dnValue(what: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (!DN_VALUE.test(value)) {
    throw new InvalidRequestError(`${what} must be 1-64 characters of A-Z a-z 0-9 space . _ * @ : ( ) ' / -`);
  }
  return value;
}

/** Fills in defaults and checks a certificate request; anything wrong is 400 `invalid_request`. */
export function resolveCertificateRequest(req: CertificateRequest): ResolvedCertificateRequest {
  const algorithm = req.algorithm ?? 'ecdsa-p256';
  if (!KEY_ALGORITHMS.includes(algorithm))
    throw new InvalidRequestError(`unknown key algorithm "${algorithm}"`);
  const commonName = dnValue('commonName', req.commonName) as string;
  if (commonName === undefined) throw new InvalidRequestError('a certificate needs a commonName');
  const days = req.validityDays;
  if (!Number.isInteger(days) || days < VALIDITY_DAYS.min || days > VALIDITY_DAYS.max) {
    throw new InvalidRequestError(`validityDays must be from ${VALIDITY_DAYS.min} to ${VALIDITY_DAYS.max}`);
  }
  const ca = req.ca ?? false;
  if (!ca && (req.allowedNames !== undefined || req.maxValidityDays !== undefined)) {
    throw new InvalidRequestError('allowedNames and maxValidityDays are limits of a CA: give ca too');
  }
  const allowedNames =
    req.allowedNames === undefined ? undefined : names('allowed', req.allowedNames, (p) => PATTERN.test(p));
  const max = req.maxValidityDays;
  if (max !== undefined && (!Number.isInteger(max) || max < VALIDITY_DAYS.min || max > VALIDITY_DAYS.max)) {
    throw new InvalidRequestError(
      `maxValidityDays must be from ${VALIDITY_DAYS.min} to ${VALIDITY_DAYS.max}`,
    );
  }
  const organization = dnValue('organization', req.organization);
  const organizationalUnit = dnValue('organizationalUnit', req.organizationalUnit);
  return {
    algorithm,
    commonName,
    ...(organization !== undefined ? { organization } : {}),
    ...(organizationalUnit !== undefined ? { organizationalUnit } : {}),
    sans: {
      dns: names('dns', req.sans?.dns, (n) => n.length <= 253 && DNS_NAME.test(n)),
      ip: names('ip', req.sans?.ip, (n) => isIP(n) !== 0),
      uri: names('uri', req.sans?.uri, validUri),
      email: names('email', req.sans?.email, (n) => n.length <= 254 && EMAIL.test(n)),
    },
    validityDays: days,
    ca,
    ...(req.issuer !== undefined ? { issuer: req.issuer } : {}),
    ...(allowedNames !== undefined ? { allowedNames } : {}),
    ...(max !== undefined ? { maxValidityDays: max } : {}),
  };
}

/**
 * Whether a name matches a CA's pattern: case-insensitive, `*` standing for one or more
 * characters other than `.`, `/` and `@` (so within one DNS label, one URI path segment, or the
 * local part of an address). `*.example.com` matches `api.example.com`, not `a.b.example.com`
 * nor `example.com`; `spiffe://prod/ns/*` matches `spiffe://prod/ns/web`; `*@example.com` any
 * address at example.com.
 */
export function nameMatches(pattern: string, name: string): boolean {
  const re = pattern
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('[^./@]+');
  return new RegExp(`^${re}$`, 'i').test(name);
}

/** Every name a certificate carries: its subject CN and each SAN. */
export function namesOf(req: ResolvedCertificateRequest): string[] {
  return [req.commonName, ...req.sans.dns, ...req.sans.ip, ...req.sans.uri, ...req.sans.email];
}

/** Why a CA may not issue this request, or undefined when it may. */
export type ConstraintViolation =
  | { readonly kind: 'name'; readonly name: string }
  | { readonly kind: 'validity'; readonly maxValidityDays: number };

/**
 * Checks a leaf request against its CA's limits: each name must match one allowed pattern, and
 * the validity must not pass the CA's maximum, nor (`caNotAfter`) the CA certificate's own end.
 */
export function checkIssuerConstraints(
  req: ResolvedCertificateRequest,
  limits: IssuerConstraints,
  now: Date,
  caNotAfter: Date,
): ConstraintViolation | undefined {
  if (limits.allowedNames !== undefined) {
    for (const name of namesOf(req)) {
      if (!limits.allowedNames.some((p) => nameMatches(p, name))) return { kind: 'name', name };
    }
  }
  const byCa = Math.floor((caNotAfter.getTime() - now.getTime()) / 86_400_000);
  const max = Math.min(limits.maxValidityDays ?? VALIDITY_DAYS.max, byCa);
  if (req.validityDays > max) return { kind: 'validity', maxValidityDays: Math.max(0, max) };
  return undefined;
}
