// A namespace import, not `{ z }`: esbuild then bundles only what is used, leaving out zod's
// locales (~270 KB of the API Lambda's bundle; test/e2e/lambda-bundle.test.ts checks).
import * as z from 'zod';
import {
  ACCESS_WHAT_LIMIT,
  BATCH_GET_MAX_PATHS,
  BATCH_PATH_MAX_CHARS,
  type BatchGetRequest,
  BODY_MAX_BYTES,
  CERTIFICATE_NAMES_MAX,
  CURSOR_MAX_CHARS,
  DESCRIPTION_MAX_CHARS,
  DESTROY_MAX_VERSIONS,
  type DestroyRequest,
  type GenerateRequest,
  IDEMPOTENCY_KEY,
  KEY_ALGORITHMS,
  LIST_LIMIT,
  MAX_VERSIONS,
  type MetadataPatch,
  OFFBOARD_DAYS,
  type OffboardRequest,
  ownRecord,
  PASSWORD_CLASS_NAMES,
  PASSWORD_LENGTH,
  PREFIX_MAX_CHARS,
  type PutRequest,
  RECOVERY_DAYS,
  SECRET_TYPES,
  TAG_KEY,
  TAG_VALUE_MAX_CHARS,
  TAGS_MAX,
  VALIDITY_DAYS,
  VERSION_MAX,
} from '../../packages/client/src/contract.js';

/**
 * The server's validation of the wire contract (packages/client/src/contract.ts): every number
 * comes from there, and each body schema's type is asserted equal to the contract's type below.
 */

/** Request bodies over this size get 413 before they are parsed. */
export const MAX_BODY_BYTES = BODY_MAX_BYTES;
export const MAX_TAGS = TAGS_MAX;

/** A UTF-16 code unit of a surrogate pair standing alone: in `u` mode a whole pair is one code point. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * A string that is well-formed Unicode. JSON can carry a lone surrogate (`"\ud800"`) that UTF-8
 * cannot store: it would come back as U+FFFD, a value the caller never wrote.
 */
const text = (max?: number) =>
  (max === undefined ? z.string() : z.string().max(max)).refine(
    (s) => !LONE_SURROGATE.test(s),
    'must be well-formed Unicode (no lone surrogate)',
  );

const tagRecord = z
  .record(
    z.string().regex(TAG_KEY, 'tag keys are 1-128 characters of A-Z a-z 0-9 _ . : / = + @ -'),
    text(TAG_VALUE_MAX_CHARS),
  )
  .refine((t) => Object.keys(t).length <= MAX_TAGS, `at most ${MAX_TAGS} tags`)
  // From here on tags are own entries of a prototype-less object (see ownRecord).
  .transform((t) => ownRecord(Object.entries(t)));

const tags = z
  .unknown()
  // JSON.parse keeps a "__proto__" key, but the record would silently drop it: refuse it.
  .refine(
    (t) => typeof t !== 'object' || t === null || !Object.hasOwn(t, '__proto__'),
    'tag key "__proto__" is reserved',
  )
  .pipe(tagRecord);

const description = text(DESCRIPTION_MAX_CHARS);

/** Standard base64 with padding (RFC 4648 §4), the one spelling Buffer writes. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Bytes as base64. Only the canonical spelling is taken (unused bits zero), so that one value has
 * one spelling. The size limit applies to the decoded bytes (the service checks it).
 */
const base64 = z
  .string()
  .regex(BASE64, 'must be standard base64 with padding')
  .refine((s) => Buffer.from(s, 'base64').toString('base64') === s, 'must be canonical base64');

export const putBody = z
  .object({
    value: text().optional(),
    valueBase64: base64.optional(),
    type: z.enum(SECRET_TYPES).optional(),
    cas: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    description: description.optional(),
    tags: tags.optional(),
  })
  .strict()
  .refine((b) => (b.value === undefined) !== (b.valueBase64 === undefined), {
    message: 'give exactly one of value and valueBase64',
  });

const writeFields = {
  cas: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  description: description.optional(),
  tags: tags.optional(),
};

const nameList = (max: number) => z.array(z.string().max(max)).max(CERTIFICATE_NAMES_MAX);
const days = z.number().int().min(VALIDITY_DAYS.min).max(VALIDITY_DAYS.max);

/**
 * `POST /v1/generate/{path}`: what to generate (`type` and its parameters) and a PUT's `cas`,
 * description and tags. The shapes are checked here; the rules across fields (a class left empty by
 * the exclusions, a SAN that is no DNS name) by the generators, also with 400.
 */
export const generateBody = z.discriminatedUnion('type', [
  z
    .object({
      type: z.literal('password'),
      length: z.number().int().min(PASSWORD_LENGTH.min).max(PASSWORD_LENGTH.max).optional(),
      classes: z.array(z.enum(PASSWORD_CLASS_NAMES)).min(1).max(PASSWORD_CLASS_NAMES.length).optional(),
      exclude: z.string().max(256).optional(),
      ...writeFields,
    })
    .strict(),
  z.object({ type: z.literal('keypair'), algorithm: z.enum(KEY_ALGORITHMS), ...writeFields }).strict(),
  z
    .object({
      type: z.literal('certificate'),
      algorithm: z.enum(KEY_ALGORITHMS).optional(),
      commonName: z.string().max(64),
      organization: z.string().max(64).optional(),
      organizationalUnit: z.string().max(64).optional(),
      sans: z
        .object({
          dns: nameList(253).optional(),
          ip: nameList(45).optional(),
          uri: nameList(2048).optional(),
          email: nameList(254).optional(),
        })
        .strict()
        .optional(),
      validityDays: days,
      ca: z.boolean().optional(),
      issuer: z.string().max(BATCH_PATH_MAX_CHARS).optional(),
      allowedNames: nameList(253).optional(),
      maxValidityDays: days.optional(),
      ...writeFields,
    })
    .strict(),
]);

export const patchBody = z
  .object({
    description: description.optional(),
    tags: tags.optional(),
    maxVersions: z.number().int().min(MAX_VERSIONS.min).max(MAX_VERSIONS.max).optional(),
  })
  .strict()
  .refine((b) => b.description !== undefined || b.tags !== undefined || b.maxVersions !== undefined, {
    message: 'nothing to change: give description, tags or maxVersions',
  });

export const destroyBody = z
  .object({
    versions: z.array(z.number().int().min(1)).min(1).max(DESTROY_MAX_VERSIONS),
  })
  .strict();

const positiveInt = (max: number) =>
  z
    .string()
    .regex(/^[0-9]{1,10}$/, 'must be a positive integer')
    .transform(Number)
    .refine((n) => n >= 1 && n <= max, `must be from 1 to ${max}`);

export const versionQuery = z.object({
  version: positiveInt(VERSION_MAX).optional(),
  stage: z.enum(['current', 'previous', 'pending']).optional(),
});

/**
 * `GET /v1/lifecycle/expiring?within=30d&prefix=&limit=&cursor=` and
 * `/v1/lifecycle/rotation-overdue?prefix=&limit=&cursor=`: paged like `/v1/list`.
 */
export const lifecycleQuery = z.object({
  prefix: z.string().max(PREFIX_MAX_CHARS).default(''),
  limit: positiveInt(LIST_LIMIT.max).default(LIST_LIMIT.default),
  cursor: z.string().max(CURSOR_MAX_CHARS).optional(),
  within: z
    .string()
    .regex(/^[1-9][0-9]{0,4}[smhd]$/, 'must be a duration such as 30d')
    .default('30d'),
});

/** `PUT /v1/rotation/{path}`: a duration such as `30d` (checked again by the service). */
export const rotationBody = z
  .object({
    every: z.string().regex(/^[1-9][0-9]{0,6}[smhd]$/, 'must be a duration such as 30d, 12h or 90m'),
    rotateImmediately: z.boolean().optional(),
    /** A loopback URL (checked again by the service against what the installation calls). */
    webhook: z.string().min(1).max(2048).optional(),
    lambdaArn: z.string().min(1).max(256).optional(),
    renewBefore: z
      .string()
      .regex(/^[1-9][0-9]{0,6}[smhd]$/, 'must be a duration such as 30d')
      .optional(),
  })
  .strict();

export const recoveryQuery = z.object({
  recoveryDays: z
    .string()
    .regex(/^[0-9]{1,3}$/, 'must be an integer')
    .transform(Number)
    .refine(
      (n) => n >= RECOVERY_DAYS.min && n <= RECOVERY_DAYS.max,
      `must be from ${RECOVERY_DAYS.min} to ${RECOVERY_DAYS.max}`,
    )
    .optional(),
});

export const listQuery = z.object({
  prefix: z.string().max(PREFIX_MAX_CHARS).default(''),
  delimiter: z.literal('/').optional(),
  limit: positiveInt(LIST_LIMIT.max).default(LIST_LIMIT.default),
  cursor: z.string().max(CURSOR_MAX_CHARS).optional(),
});

/** `GET /v1/access/what`: `groups` is comma-separated; `limit` counts secrets scanned per page. */
export const accessWhatQuery = z.object({
  principal: z.string().min(1).max(2048),
  groups: z
    .string()
    .max(4096)
    .transform((g) => g.split(','))
    .optional(),
  prefix: z.string().max(PREFIX_MAX_CHARS).default(''),
  limit: positiveInt(ACCESS_WHAT_LIMIT.max).optional(),
  cursor: z.string().max(CURSOR_MAX_CHARS).optional(),
});

/** `GET /v1/access/who`. */
export const accessWhoQuery = z.object({
  path: z.string().max(PREFIX_MAX_CHARS),
  action: z
    .enum(['read', 'write', 'list', 'readMetadata', 'writeMetadata', 'delete', 'destroy'])
    .default('read'),
});

/** `POST /v1/admin/offboard`. */
export const offboardBody = z
  .object({
    principal: z.string().min(1).max(2048),
    days: z.number().int().min(OFFBOARD_DAYS.min).max(OFFBOARD_DAYS.max).optional(),
    since: z
      .string()
      .max(64)
      .refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 time')
      .optional(),
    reason: z
      .string()
      .max(256)
      .refine((s) => !LONE_SURROGATE.test(s), 'must be well-formed Unicode')
      .optional(),
    rotate: z.boolean().optional(),
  })
  .strict()
  .refine((b) => b.days === undefined || b.since === undefined, { message: 'give days or since, not both' });

/** `POST /v1/batch-get`: 1 to 20 paths; each is checked by the path rules on its own. */
export const batchGetBody = z
  .object({
    paths: z.array(z.string().max(BATCH_PATH_MAX_CHARS)).min(1).max(BATCH_GET_MAX_PATHS),
  })
  .strict();

export const idempotencyKeyHeader = z
  .string()
  .regex(IDEMPOTENCY_KEY, 'must be 1-128 characters of A-Z a-z 0-9 . _ : -')
  .optional();

/** True only when A and B are the same type (each assignable to the other, exactly). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** Compiles only for `true`: a schema that drifts from the contract's type is a type error. */
const sameAs = <T extends true>(_: T): void => {};
sameAs<Equal<z.infer<typeof putBody>, PutRequest>>(true);
sameAs<Equal<z.infer<typeof patchBody>, MetadataPatch>>(true);
sameAs<Equal<z.infer<typeof destroyBody>, DestroyRequest>>(true);
sameAs<Equal<z.infer<typeof batchGetBody>, BatchGetRequest>>(true);
sameAs<Equal<z.infer<typeof offboardBody>, OffboardRequest>>(true);
/** Weaker than `sameAs` (a union of intersections is not `Equal` to its flattened form). */
const assignable = <_A extends B, B>(): void => {};
assignable<z.infer<typeof generateBody>, GenerateRequest>();
