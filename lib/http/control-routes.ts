import type { Context, Hono } from 'hono';
import * as z from 'zod';
import type { ControlAdmin } from '../control/admin.js';
import type { ControlPlane } from '../control/plane.js';
import { MAX_POLICY_FILES, POLICY_FILE_NAME } from '../control/policies.js';
import type { Caller } from '../secrets/service.js';
import { type AppEnv, jsonBody, parse } from './request.js';

/*
 * The admin routes of the control records (docs/api.md): policy push, history, rollback and
 * approval; revocations. Every one is Cedar `admin` on the root folder (ControlAdmin decides) and
 * audited; the bodies are checked here first.
 */

const LONE_SURROGATE = /\p{Cs}/u;
const text = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !LONE_SURROGATE.test(s), 'must be well-formed Unicode');

const policyPushBody = z
  .object({
    files: z
      .array(
        z
          .object({
            name: z.string().regex(POLICY_FILE_NAME, 'a plain .cedar file name'),
            text: text(128 * 1024),
          })
          .strict(),
      )
      .min(1)
      .max(MAX_POLICY_FILES),
    comment: text(256).optional(),
  })
  .strict();

const versionBody = z.object({ version: z.number().int().min(1).max(1_000_000_000) }).strict();

const isoTime = z
  .string()
  .max(64)
  .refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 time');

/** Group names as the group mappings make them. */
const GROUP = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

const revokeBody = z
  .object({
    principal: z
      .object({
        type: z.enum(['User', 'Role', 'Workload']).optional(),
        id: text(1024).refine((s) => s.length > 0, 'must not be empty'),
      })
      .strict()
      .optional(),
    group: z.string().regex(GROUP, 'a group name').optional(),
    reason: text(256).optional(),
    until: isoTime.optional(),
    tokensIssuedBefore: isoTime.optional(),
  })
  .strict()
  .refine((b) => (b.principal === undefined) !== (b.group === undefined), {
    message: 'give exactly one of principal or group',
  });

const REVOCATION_ID = /^r-[0-9a-f]{8}$/;

export function mountControlRoutes(
  api: Hono<AppEnv>,
  control: { readonly plane: ControlPlane; readonly admin: ControlAdmin },
  caller: (c: Context<AppEnv>) => Caller,
): void {
  const { admin } = control;

  api.get('/admin/policies', async (c) => c.json(await admin.history(caller(c))));

  api.post('/admin/policies', async (c) => {
    const body = parse(policyPushBody, await jsonBody(c), 'body');
    return c.json(await admin.push(caller(c), body.files, body.comment));
  });

  api.post('/admin/policies/rollback', async (c) => {
    const body = parse(versionBody, await jsonBody(c), 'body');
    return c.json(await admin.rollback(caller(c), body.version));
  });

  api.post('/admin/policies/approve', async (c) => {
    const body = parse(versionBody, await jsonBody(c), 'body');
    return c.json(await admin.approve(caller(c), body.version));
  });

  api.get('/admin/revocations', async (c) => c.json({ revocations: await admin.revocations(caller(c)) }));

  api.post('/admin/revocations', async (c) => {
    const body = parse(revokeBody, await jsonBody(c), 'body');
    const input = {
      ...(body.principal
        ? {
            principal: {
              id: body.principal.id,
              ...(body.principal.type ? { type: body.principal.type } : {}),
            },
          }
        : { group: body.group as string }),
      ...(body.reason !== undefined ? { reason: body.reason } : {}),
      ...(body.until !== undefined ? { until: body.until } : {}),
      ...(body.tokensIssuedBefore !== undefined ? { tokensIssuedBefore: body.tokensIssuedBefore } : {}),
    };
    return c.json(await admin.revoke(caller(c), input));
  });

  api.delete('/admin/revocations/:id', async (c) => {
    const id = parse(
      z.string().regex(REVOCATION_ID, 'a revocation id (r-xxxxxxxx)'),
      c.req.param('id'),
      'id',
    );
    await admin.unrevoke(caller(c), id);
    return c.json({ id, removed: true });
  });
}
