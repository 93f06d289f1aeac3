import { z } from 'zod';

/** Request bodies over this size get 413 before they are parsed. */
export const MAX_BODY_BYTES = 128 * 1024;
export const MAX_TAGS = 50;

const TAG_KEY = /^[A-Za-z0-9_.:/=+@-]{1,128}$/;

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
    text(256),
  )
  .refine((t) => Object.keys(t).length <= MAX_TAGS, `at most ${MAX_TAGS} tags`);

const tags = z
  .unknown()
  // JSON.parse keeps a "__proto__" key, but the record would silently drop it: refuse it.
  .refine(
    (t) => typeof t !== 'object' || t === null || !Object.hasOwn(t, '__proto__'),
    'tag key "__proto__" is reserved',
  )
  .pipe(tagRecord);

const description = text(1024);

export const putBody = z
  .object({
    value: text(),
    cas: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    description: description.optional(),
    tags: tags.optional(),
  })
  .strict();

export const patchBody = z
  .object({
    description: description.optional(),
    tags: tags.optional(),
    maxVersions: z.number().int().min(1).max(1000).optional(),
  })
  .strict()
  .refine((b) => b.description !== undefined || b.tags !== undefined || b.maxVersions !== undefined, {
    message: 'nothing to change: give description, tags or maxVersions',
  });

export const destroyBody = z
  .object({
    versions: z.array(z.number().int().min(1)).min(1).max(50),
  })
  .strict();

const positiveInt = (max: number) =>
  z
    .string()
    .regex(/^[0-9]{1,10}$/, 'must be a positive integer')
    .transform(Number)
    .refine((n) => n >= 1 && n <= max, `must be from 1 to ${max}`);

export const versionQuery = z.object({ version: positiveInt(2 ** 31).optional() });

export const recoveryQuery = z.object({
  recoveryDays: z
    .string()
    .regex(/^[0-9]{1,3}$/, 'must be an integer')
    .transform(Number)
    .refine((n) => n >= 7 && n <= 30, 'must be from 7 to 30')
    .optional(),
});

export const listQuery = z.object({
  prefix: z.string().max(512).default(''),
  delimiter: z.literal('/').optional(),
  limit: positiveInt(1000).default(100),
  cursor: z.string().max(4096).optional(),
});

/** `POST /v1/batch-get`: 1 to 20 paths; each is checked by the path rules on its own. */
export const batchGetBody = z
  .object({
    paths: z.array(z.string().max(1024)).min(1).max(20),
  })
  .strict();

export const idempotencyKeyHeader = z
  .string()
  .regex(/^[A-Za-z0-9._:-]{1,128}$/, 'must be 1-128 characters of A-Z a-z 0-9 . _ : -')
  .optional();
