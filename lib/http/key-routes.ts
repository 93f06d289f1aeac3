import type { Context, Hono } from 'hono';
import * as z from 'zod';
import { InvalidRequestError } from '../errors.js';
import type { KeyAdmin } from '../keys/key-admin.js';
import type { Caller } from '../secrets/service.js';

/** A top-level folder name (one path segment). */
const folder = z.string().regex(/^[A-Za-z0-9._-]{1,512}$/, 'a top-level folder name');
const KMS_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/;

export const rotateBody = z
  .strictObject({
    folder: folder.optional(),
    root: z.boolean().optional(),
    kmsKeyId: z.string().regex(KMS_ARN, 'a KMS key ARN').optional(),
  })
  .refine((b) => !(b.root && b.folder !== undefined), 'root and folder exclude each other')
  .refine((b) => b.kmsKeyId === undefined || b.root === true, 'kmsKeyId needs root');
export const revertBody = z
  .strictObject({ folder: folder.optional(), root: z.boolean().optional() })
  .refine((b) => !(b.root && b.folder !== undefined), 'root and folder exclude each other');
export const rewrapBody = z.strictObject({
  folder: folder.optional(),
  /** How long this call may work before it answers with the cursor (the CLI calls again). */
  budgetMs: z.number().int().min(100).max(10_000).optional(),
});
export const retireBody = z.strictObject({ id: z.string().min(1).max(2048) });

function parseBody<T>(schema: z.ZodType<T>, input: unknown): T {
  const result = schema.safeParse(input ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  throw new InvalidRequestError(`invalid body: ${where}${issue?.message ?? 'malformed'}`);
}

/**
 * The key administration routes (`coffer keys …`), under the API's prefix: every one is Cedar
 * `admin` (KeyAdmin decides and notes the key ids for the audit record).
 */
// biome-ignore lint/suspicious/noExplicitAny: the app's Env type stays private to app.ts
export function mountKeyRoutes<E extends { Variables: any }>(
  api: Hono<E>,
  admin: KeyAdmin,
  caller: (c: Context<E>) => Caller,
  body: (c: Context<E>) => Promise<unknown>,
): void {
  api.get('/keys/status', async (c) => c.json(await admin.status(caller(c))));
  api.post('/keys/rotate', async (c) => {
    const b = parseBody(rotateBody, await body(c));
    if (b.root) return c.json(await admin.rotateRoot(caller(c), b.kmsKeyId));
    return c.json(await admin.rotate(caller(c), b.folder));
  });
  api.post('/keys/revert', async (c) => {
    const b = parseBody(revertBody, await body(c));
    return c.json(
      await admin.revert(caller(c), {
        ...(b.folder !== undefined ? { folder: b.folder } : {}),
        ...(b.root ? { root: true } : {}),
      }),
    );
  });
  api.post('/keys/flush', async (c) => c.json(await admin.flush(caller(c))));
  api.post('/keys/rewrap', async (c) => {
    const b = parseBody(rewrapBody, await body(c));
    const cursor = await admin.rewrap(caller(c), {
      ...(b.folder !== undefined ? { folder: b.folder } : {}),
      ...(b.budgetMs !== undefined ? { budgetMs: b.budgetMs } : {}),
    });
    return c.json({ cursor: cursor ?? null });
  });
  api.post('/keys/retire', async (c) => {
    const b = parseBody(retireBody, await body(c));
    return c.json(await admin.retire(caller(c), b.id));
  });
}
