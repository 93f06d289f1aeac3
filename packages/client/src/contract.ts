/**
 * The wire contract of the Coffer HTTP API v1 (docs/api.md), defined once: every limit and the
 * request and response bodies. The server's validation (lib/http/schemas.ts, lib/paths.ts,
 * lib/secrets/service.ts), the client and the CLI import it, so a limit changed here changes
 * everywhere; the server's zod schemas are checked against these types at compile time.
 *
 * Plain values and types only: no imports, nothing that runs but the path rules.
 */

// ---- Limits -------------------------------------------------------------------------------

/** A path is 1 to 16 `/`-separated segments of `[A-Za-z0-9._-]`, at most 512 bytes. */
export const PATH_MAX_BYTES = 512;
export const PATH_MAX_SEGMENTS = 16;
/** The characters of one path segment. */
export const PATH_SEGMENT = /^[A-Za-z0-9._-]+$/;
/** The characters of a list prefix: those of paths, and `/`. */
export const PREFIX_CHARS = /^[A-Za-z0-9._\-/]+$/;
/** A list prefix in characters, checked before the path rules (which count bytes). */
export const PREFIX_MAX_CHARS = PATH_MAX_BYTES;

/**
 * A secret value, in bytes (64 KiB): the UTF-8 bytes of `value`, or the decoded bytes of
 * `valueBase64`. Larger: 413 `value_too_large`.
 */
export const VALUE_MAX_BYTES = 64 * 1024;
/** A request body, in bytes (128 KiB). Larger: 413 `payload_too_large`, before it is parsed. */
export const BODY_MAX_BYTES = 128 * 1024;

export const TAGS_MAX = 50;
/** A tag key: 1 to 128 characters of `A-Z a-z 0-9 _ . : / = + @ -`. */
export const TAG_KEY = /^[A-Za-z0-9_.:/=+@-]{1,128}$/;
export const TAG_VALUE_MAX_CHARS = 256;
export const DESCRIPTION_MAX_CHARS = 1024;

/** Versions are numbered from 1; a version in a query or a `cas` on the CLI is at most this. */
export const VERSION_MAX = 2 ** 31;

/** `DELETE ?recoveryDays=`: how long a soft-deleted secret can be restored. */
export const RECOVERY_DAYS = { min: 7, max: 30, default: 7 } as const;
/** `PATCH /meta` `maxVersions`: how many versions a secret keeps. */
export const MAX_VERSIONS = { min: 1, max: 1000, default: 100 } as const;
/** `POST /destroy` `versions`: at most this many per request. */
export const DESTROY_MAX_VERSIONS = 50;
/** `POST /batch-get`: 1 to 20 paths; the client splits longer lists. */
export const BATCH_GET_MAX_PATHS = 20;
/** A path of a batch, in characters, before the path rules look at it. */
export const BATCH_PATH_MAX_CHARS = 1024;
/** `GET /list?limit=`: the page size. */
export const LIST_LIMIT = { min: 1, max: 1000, default: 100 } as const;
export const CURSOR_MAX_CHARS = 4096;
/** The `Idempotency-Key` header of a PUT. */
export const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:-]{1,128}$/;

// ---- Path rules ---------------------------------------------------------------------------

const utf8 = new TextEncoder();

/** A `.` or `..` segment, which a URL would resolve away (`a/../b` would name `b`). */
export function isDotSegment(segment: string): boolean {
  return segment === '.' || segment === '..';
}

/**
 * What is wrong with a secret path, or undefined when it follows the rules: 1 to 16
 * `/`-separated segments of `[A-Za-z0-9._-]`, at most 512 bytes, no `.` or `..` segment, no
 * leading or trailing `/`, no empty segment.
 *
 * @example pathProblem('team-a/db/password') // undefined
 */
export function pathProblem(path: string): string | undefined {
  if (typeof path !== 'string' || path.length === 0) return 'path is empty';
  if (utf8.encode(path).length > PATH_MAX_BYTES) return `path is longer than ${PATH_MAX_BYTES} bytes`;
  const segments = path.split('/');
  if (segments.length > PATH_MAX_SEGMENTS) return `path has more than ${PATH_MAX_SEGMENTS} segments`;
  for (const segment of segments) {
    if (segment === '') return 'path has an empty segment or a leading/trailing slash';
    if (isDotSegment(segment)) return 'path has a "." or ".." segment';
    if (!PATH_SEGMENT.test(segment)) return 'path segments may only contain A-Z a-z 0-9 . _ -';
  }
  return undefined;
}

/**
 * What is wrong with a list prefix, or undefined: a string prefix of paths (may end with `/`,
 * may be empty), using only the characters a path may contain.
 */
export function prefixProblem(prefix: string): string | undefined {
  if (prefix === '') return undefined;
  if (utf8.encode(prefix).length > PATH_MAX_BYTES) return `prefix is longer than ${PATH_MAX_BYTES} bytes`;
  if (!PREFIX_CHARS.test(prefix)) return 'prefix may only contain A-Z a-z 0-9 . _ - /';
  if (prefix.startsWith('/')) return 'prefix must not start with "/"';
  if (prefix.includes('//')) return 'prefix has an empty segment';
  // Whole segments (all but the last, which may be the start of a name like `..env`) follow the
  // path rules: a `.` or `..` folder can hold nothing.
  if (prefix.split('/').slice(0, -1).some(isDotSegment)) return 'prefix has a "." or ".." segment';
  return undefined;
}

// ---- Tags ---------------------------------------------------------------------------------

/**
 * A map of user-chosen keys (tags, attributes) as an object with no prototype. A key such as
 * `constructor`, `toString` or `__proto__` is then only ever an own entry: nothing inherited
 * answers for a missing key, and no assignment can reach a prototype.
 *
 * @example
 * const tags = ownRecord(Object.entries(parsed)); // tags.constructor is undefined unless set
 */
export function ownRecord(entries: Iterable<readonly [string, string]>): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  for (const [key, value] of entries) {
    // defineProperty, not assignment: `out.__proto__ = v` is a plain key here, but say so in code.
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

// ---- Secret types -------------------------------------------------------------------------

/**
 * What a secret's value is (docs/api.md, "Types"). `text` is the default, and a secret written
 * before types existed is `text`. `binary` values are any bytes; every other type is UTF-8 text.
 * `json`, `keypair` and `certificate` values are JSON objects of string fields, checked on write.
 */
export const SECRET_TYPES = ['text', 'binary', 'json', 'password', 'keypair', 'certificate'] as const;
export type SecretType = (typeof SECRET_TYPES)[number];

/** The fields a `keypair` value must have (PEM): the public key must be the private key's. */
export const KEYPAIR_FIELDS = ['private_key', 'public_key'] as const;
/**
 * The fields a `certificate` value must have (PEM): the private key must be the certificate's.
 * `chain` holds the issuing certificates (PEM, concatenated), or is empty for a self-signed one.
 */
export const CERTIFICATE_FIELDS = ['certificate', 'private_key', 'chain'] as const;

/** The type a secret's value is read as when it has none (written before types existed). */
export const DEFAULT_SECRET_TYPE: SecretType = 'text';

export function isSecretType(value: unknown): value is SecretType {
  return typeof value === 'string' && (SECRET_TYPES as readonly string[]).includes(value);
}

/** What the metadata of a `keypair` says about its value (derived at write time). */
export interface KeypairInfo {
  /** The public key, PEM (SPKI). */
  publicKey: string;
  /** `rsa`, `ec`, `ed25519`, … (node's `asymmetricKeyType`). */
  keyType: string;
}

/** What the metadata of a `certificate` says about its value (derived at write time). */
export interface CertificateInfo {
  /** The subject's distinguished name, one `KEY=value` per line as node prints it. */
  subject: string;
  issuer: string;
  /** Subject alternative names, e.g. `DNS:example.com`, `IP Address:127.0.0.1`. */
  sans: string[];
  /** The serial number, upper-case hex. */
  serial: string;
  /** SHA-256 of the DER certificate, upper-case hex pairs joined by `:`. */
  fingerprint: string;
  /** ISO 8601. */
  notBefore: string;
  notAfter: string;
  /** The certificate is a CA (basic constraints). */
  ca: boolean;
  /** The certificate's public key, PEM (SPKI). */
  publicKey: string;
}

// ---- Bodies -------------------------------------------------------------------------------

/**
 * `PUT /v1/secrets/{path}`: exactly one of `value` (text) and `valueBase64` (bytes, standard
 * base64 with padding). `cas: 0` means "only if absent". `type` left out keeps the secret's type
 * (`binary` for a new secret written with `valueBase64`, else `text`).
 */
export interface PutRequest {
  value?: string;
  valueBase64?: string;
  type?: SecretType;
  cas?: number;
  description?: string;
  tags?: Record<string, string>;
}

export interface PutResult {
  path: string;
  version: number;
  createdAt: string;
}

/**
 * `GET /v1/secrets/{path}[?version=N]`: `valueBase64` for a `binary` value, `value` for every
 * other type. `type` is the version's own type.
 */
export interface SecretValue {
  path: string;
  version: number;
  type: SecretType;
  value?: string;
  valueBase64?: string;
  createdAt: string;
}

/** `DELETE /v1/secrets/{path}[?recoveryDays=N]`. */
export interface DeleteResult {
  path: string;
  deletedAt: string;
  purgeAt: string;
}

/** `POST /v1/restore/{path}`. */
export interface RestoreResult {
  path: string;
  version: number;
}

/** `POST /v1/purge/{path}`: a soft-deleted secret removed at once (Cedar action `admin`). */
export interface PurgeResult {
  path: string;
  purged: true;
}

/** `POST /v1/destroy/{path}`. */
export interface DestroyRequest {
  versions: number[];
}

export interface DestroyResult {
  path: string;
  destroyed: number[];
}

export interface VersionInfo {
  version: number;
  /** The version's own type (a later write may have changed the secret's). */
  type: SecretType;
  createdAt: string;
  createdBy?: string;
  destroyed: boolean;
  keyId?: string;
}

/** `GET` and `PATCH /v1/meta/{path}`: metadata and the version list, no values. */
export interface SecretMetadata {
  path: string;
  currentVersion: number;
  /** The type of the current version. */
  type: SecretType;
  /** For a `keypair`: its public key (never the private key). */
  keypair?: KeypairInfo;
  /** For a `certificate`: what it says (never the private key). */
  certificate?: CertificateInfo;
  createdAt: string;
  updatedAt: string;
  description?: string;
  tags: Record<string, string>;
  maxVersions: number;
  owner?: string;
  deletedAt?: string;
  purgeAt?: string;
  /** How the value was generated (no secret material): what a rotation would generate again. */
  generator?: Record<string, unknown>;
  /** Which version has each staging label (`current` is what a plain read returns). */
  stages?: StageLabels;
  /** The rotation policy and the last rotation's outcome, when the secret has one. */
  rotation?: RotationInfo;
  /**
   * The secret waits to be replaced by hand (offboarding marked it and it has no rotation
   * policy): cleared when a new version becomes current.
   */
  rotationRequested?: RotationRequestInfo;
  versions: VersionInfo[];
}

/** Staging labels: `current` (what a plain read returns), `previous`, and a rotation's `pending`. */
export const STAGE_NAMES = ['current', 'previous', 'pending'] as const;
export type StageName = (typeof STAGE_NAMES)[number];

export interface StageLabels {
  current: number;
  previous?: number;
  pending?: number;
}

/** A rotation policy as metadata shows it. */
export interface RotationInfo {
  /** How often, as a duration (`30d`). */
  every: string;
  everySeconds: number;
  /** When the next rotation is due. */
  nextAt: string;
  lastRotatedAt?: string;
  /** The last failure: a fixed message, its time and, with an external rotator, the step. */
  lastRotationError?: { message: string; at: string; step?: RotatorStep };
  /** The external rotator (docs/rotation.md); absent: the built-in generator alone. */
  rotator?: RotatorInfo;
  /** With an external rotator, a rotation under way: the pending version, the step it is at, and whether that step failed. */
  progress?: { version: number; step: RotatorStep; failed: boolean };
  /** Certificates: renewed this long before notAfter, if that comes before `every` (`30d`). */
  renewBefore?: string;
}

/** Why and since when a secret without a rotation policy waits for a new value. */
export interface RotationRequestInfo {
  at: string;
  reason: string;
}

/** The steps an external rotator is called for (docs/rotation.md, "External rotators"). */
export const ROTATOR_STEPS = ['setSecret', 'testSecret', 'revertSecret'] as const;
export type RotatorStep = (typeof ROTATOR_STEPS)[number];

/** An external rotator: a loopback webhook (local server) or an allow-listed Lambda function (AWS). */
export type RotatorInfo = { kind: 'webhook'; url: string } | { kind: 'lambda'; arn: string };

/**
 * `PUT /v1/rotation/{path}`: rotate with the secret's own generator every `every` (`30d`);
 * with `webhook` or `lambdaArn`, an external rotator sets and tests each new value in its target
 * (Cedar `admin` instead of `writeMetadata`).
 */
export interface RotationPolicyRequest {
  every: string;
  /** Make the first rotation due now rather than `every` from now. */
  rotateImmediately?: boolean;
  /**
   * Certificates only: renew this long before notAfter (a duration, at least `1h`, shorter than
   * the validity). Default: 30 days, at most half the certificate's validity.
   */
  renewBefore?: string;
  /** A loopback URL called with each step (local server only). */
  webhook?: string;
  /** A Lambda function on the installation's allow-list (CDK context `rotatorLambdaArns`). */
  lambdaArn?: string;
}

/** The JSON body an external rotator is called with, once per step. */
export interface RotatorCall {
  step: RotatorStep;
  path: string;
  /** The version the step is about: the pending version, or for `revertSecret` the previous one. */
  pendingVersion: number;
  /** The stage the grant reads: `pending`, or `previous` for `revertSecret`. */
  stage: 'pending' | 'previous';
  /** A bearer token for `GET /v1/secrets/{path}?stage=<stage>`, for this step only, short-lived. */
  grant: string;
}

/** One secret of `GET /v1/lifecycle/rotation-overdue` or `/v1/lifecycle/expiring`. */
export interface LifecycleItem {
  path: string;
  version: number;
  updatedAt: string;
  /** An overdue rotation: when it was due. */
  nextAt?: string;
  lastRotationError?: { message: string; at: string };
  /** Overdue because it waits to be replaced by hand (it has no rotation policy): since when, why. */
  rotationRequested?: RotationRequestInfo;
  /** An expiring certificate: the end of its validity. */
  notAfter?: string;
}

/** A page of a lifecycle listing; `cursor` (opaque) asks for the next, as for `/v1/list`. */
export interface LifecyclePage {
  items: LifecycleItem[];
  cursor?: string;
}

/** `POST /v1/rotate/{path}` (202): where the rotation stands. */
export interface RotationResult {
  path: string;
  /** `finished`: pending became current; `pending`: a pending version waits to be finished. */
  state: 'finished' | 'pending';
  stages: StageLabels;
  /** The version this rotation made current (or left pending). */
  version: number;
}

/** `PATCH /v1/meta/{path}`: at least one field. */
export interface MetadataPatch {
  description?: string;
  tags?: Record<string, string>;
  maxVersions?: number;
}

export interface ListItem {
  path: string;
  version: number;
  updatedAt: string;
}

/** `GET /v1/list`: a page may be short or empty after policy filtering while a cursor remains. */
export interface ListPage {
  items: ListItem[];
  folders?: string[];
  cursor?: string;
}

/** `POST /v1/batch-get`. */
export interface BatchGetRequest {
  paths: string[];
}

/** The error of one path of a batch (the response itself is 200). */
export interface BatchItemError {
  code: string;
  message: string;
}

/** One answer of a batch: the value, or why this path has none. */
export type BatchGetItem = SecretValue | { path: string; error: BatchItemError };

export interface BatchGetResponse {
  results: BatchGetItem[];
}

/** `GET /v1/whoami`: the principal as the server sees it. */
export interface WhoAmI {
  type: string;
  id: string;
  entity: string;
  groups: string[];
  attributes: Record<string, string>;
  authMethod: string;
  issuer?: string;
}

/** `GET /v1/access/who?action=`: the actions a `who` report answers for (default `read`). */
export const ACCESS_WHO_ACTIONS = [
  'read',
  'write',
  'list',
  'readMetadata',
  'writeMetadata',
  'delete',
  'destroy',
] as const;
export type AccessWhoAction = (typeof ACCESS_WHO_ACTIONS)[number];

/** `GET /v1/access/what?limit=`: secrets examined per page. */
export const ACCESS_WHAT_LIMIT = { min: 1, max: 1000, default: 500 } as const;

/** The principal an access report evaluated, and where its groups and tags came from. */
export interface AccessPrincipal {
  type: 'User' | 'Role' | 'Workload';
  id: string;
  entity: string;
  groups: readonly string[];
  tags: Readonly<Record<string, string>>;
  authMethod: string;
  issuer?: string;
  kind?: string;
  /** `directory`: as the server last saw it; `given`: groups from the request. */
  source: 'directory' | 'given';
  lastSeen?: string;
}

/** One secret of an `access what` page: what the principal may do with it (at least one is true). */
export interface AccessWhatItem {
  path: string;
  read: boolean;
  write: boolean;
  list: boolean;
  /** Whether the secret has a rotation policy (Coffer can rotate it; else it is replaced by hand). */
  rotationPolicy: boolean;
}

/** `GET /v1/access/what`: one page. */
export interface AccessWhatPage {
  principal: AccessPrincipal;
  prefix: string;
  policySetHash: string;
  /** Secrets examined on this page (for progress); `items` holds those with any right. */
  scanned: number;
  items: AccessWhatItem[];
  /** Folders the principal would see listed; a folder may be repeated on a later page. */
  folders: string[];
  cursor?: string;
}

/** A principal named by an `access who` report. */
export interface AccessWhoPrincipal {
  type: 'User' | 'Role' | 'Workload';
  id: string;
  entity: string;
  /** `directory`: seen by the server; `policy`: named by a policy. */
  sources: ('directory' | 'policy')[];
  lastSeen?: string;
}

/** `GET /v1/access/who`. */
export interface AccessWhoReport {
  path: string;
  action: AccessWhoAction;
  policySetHash: string;
  /** Groups whose members may, by membership alone. */
  groups: string[];
  principals: AccessWhoPrincipal[];
  /** Such as directory entries that failed verification and were left out. */
  warnings: string[];
}

/** `POST /v1/admin/offboard`: the read window, in days (default 90). */
export const OFFBOARD_DAYS = { min: 1, max: 3650, default: 90 } as const;

/** The body of `POST /v1/admin/offboard`. */
export interface OffboardRequest {
  /** `Type::"id"` (User, Role, Workload) or a bare id (then any principal type with that id). */
  principal: string;
  /** The read window: the last `days` days (default 90), or from `since` (ISO 8601); not both. */
  days?: number;
  since?: string;
  /** Kept in the revocation (no secrets). Default `offboarded`. */
  reason?: string;
  /** Rotate now the read secrets whose rotation is configured; the others are marked due. */
  rotate?: boolean;
}

/** Rotation of one secret an offboarded principal read (null in a report: rotation not configured). */
export interface OffboardRotation {
  /** Whether the secret has a rotation policy. */
  configured: boolean;
  /** Marked due for rotation by this offboarding. */
  markedDue: boolean;
  /** Rotated now (`--rotate`, where configured); `error` says why not when it failed. */
  rotated: boolean;
  error?: string;
}

/** A secret the principal read in the window (successful reads only: status 200, decision allow). */
export interface OffboardRead {
  path: string;
  /** Successful reads of it in the window. */
  reads: number;
  firstRead: string;
  lastRead: string;
  /** `get` (a single read) and/or `batch-get`. */
  via: ('get' | 'batch-get')[];
  /** Whether the principal could still read it just before it was revoked; null when unknown. */
  couldRead: boolean | null;
  rotation: OffboardRotation | null;
}

/** The answer of an offboarding: the revocation, then what was read and what could be. */
export interface OffboardReport {
  principal: { type?: 'User' | 'Role' | 'Workload'; id: string };
  /** The revocation entry (a new one, or the live one that already covered the principal). */
  revocation: {
    id: string;
    principal?: { type?: string; id: string };
    reason?: string;
    by: string;
    at: string;
  };
  alreadyRevoked: boolean;
  /** The audit window searched: ISO times; `days` is null when `since` was given. */
  window: { since: string; until: string; days: number | null };
  read: OffboardRead[];
  /**
   * Paths named by successful batch reads that also denied some path: the audit record of a batch
   * does not say which of its paths were read, so these may have been.
   */
  possiblyRead: string[];
  /** What it could read before the revocation (policies in force, last-seen groups); null when unknown. */
  couldRead: {
    principal: AccessPrincipal;
    policySetHash: string;
    paths: string[];
    /** Those of `paths` that have a rotation policy. */
    withRotationPolicy: string[];
  } | null;
  rotation: {
    /** False when the server has no rotation scheduler: nothing is marked. */
    configured: boolean;
    markedDue: string[];
    rotated: string[];
  };
  warnings: string[];
}

/** Every error answer. `code` is a row of the error registry; some codes add fields. */
export interface ErrorBody {
  error: { code: string; message: string; requestId: string; [extra: string]: unknown };
}

// ---- Types and generation (issue 16) -------------------------------------------------------

/** The types the server can generate (`POST /v1/generate/{path}`). */
export const GENERATED_TYPES = ['password', 'keypair', 'certificate'] as const;
export type GeneratedType = (typeof GENERATED_TYPES)[number];

/** Key algorithms of generated key pairs and certificates. */
export const KEY_ALGORITHMS = ['ed25519', 'ecdsa-p256', 'rsa-3072', 'rsa-4096'] as const;
export type KeyAlgorithm = (typeof KEY_ALGORITHMS)[number];

export const PASSWORD_CLASS_NAMES = ['lower', 'upper', 'digits', 'symbols'] as const;
export type PasswordClass = (typeof PASSWORD_CLASS_NAMES)[number];
/** A generated password's length (default 32). */
export const PASSWORD_LENGTH = { min: 8, max: 1024, default: 32 } as const;
/** A generated certificate's validity, and a CA's maximum for what it issues, in days. */
export const VALIDITY_DAYS = { min: 1, max: 3650 } as const;
/** SANs of each kind, and name patterns of a CA, per request. */
export const CERTIFICATE_NAMES_MAX = 100;

/** A password: `length` characters from `classes` (each at least once), none of `exclude`. */
export interface PasswordParams {
  type: 'password';
  length?: number;
  classes?: PasswordClass[];
  exclude?: string;
}

/** A key pair, stored as `{"private_key": PEM, "public_key": PEM}`. */
export interface KeypairParams {
  type: 'keypair';
  algorithm: KeyAlgorithm;
}

/**
 * A certificate and its key, stored as `{"certificate", "private_key", "chain"}` (PEM). Self-signed
 * unless `issuer` names a certificate secret whose certificate is a CA (Cedar `issue` on it).
 * `allowedNames` and `maxValidityDays` are the limits of a CA (`ca: true`) on what it issues.
 */
export interface CertificateParams {
  type: 'certificate';
  algorithm?: KeyAlgorithm;
  commonName: string;
  organization?: string;
  organizationalUnit?: string;
  sans?: { dns?: string[]; ip?: string[]; uri?: string[]; email?: string[] };
  validityDays: number;
  ca?: boolean;
  issuer?: string;
  allowedNames?: string[];
  maxValidityDays?: number;
}

export type GeneratorParams = PasswordParams | KeypairParams | CertificateParams;

/** `POST /v1/generate/{path}`: what to generate, and the same `cas`, description and tags as a PUT. */
export type GenerateRequest = GeneratorParams & {
  cas?: number;
  description?: string;
  tags?: Record<string, string>;
};

/** A key pair's public half: never the private key. */
export interface PublicKeyMetadata {
  algorithm: KeyAlgorithm;
  publicKey: string;
  /** SHA-256 of the DER SubjectPublicKeyInfo, hex. */
  fingerprint: string;
}

/** What may be said of a certificate: never its private key. */
export interface CertificateMetadata {
  subject: string;
  issuer: string;
  serial: string;
  /** SHA-256 of the DER certificate, colon-separated hex. */
  fingerprint: string;
  notBefore: string;
  notAfter: string;
  sans: string[];
  ca: boolean;
  keyAlgorithm?: string;
}

/**
 * The answer of a generation: the new version and what may be said about the value, never the
 * value. `generator` is the request's parameters with defaults filled in (kept in the head).
 */
export interface GenerateResult extends PutResult {
  type: GeneratedType;
  generator: Record<string, unknown>;
  publicKey?: PublicKeyMetadata;
  certificate?: CertificateMetadata;
}
