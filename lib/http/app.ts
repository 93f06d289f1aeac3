import { randomUUID } from 'node:crypto';
import { type Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { Offboarding } from '../access/offboard.js';
import type { AccessReports } from '../access/reports.js';
import type { AuditContext, AuditTrail } from '../audit/trail.js';
import { isIamPath } from '../authn/iam.js';
import type { Authenticator, ClientCertificateInput, IamCaller, Principal } from '../authn/principal.js';
import type { ControlAdmin } from '../control/admin.js';
import type { ControlPlane } from '../control/plane.js';
import {
  AuditUnavailableError,
  CofferError,
  ForbiddenError,
  InvalidPathError,
  NotFoundError,
  PayloadTooLargeError,
  RevokedError,
} from '../errors.js';
import type { KeyAdmin } from '../keys/key-admin.js';
import { describeError, type Logger } from '../log.js';
import { type GrantReader, grantOf } from '../secrets/rotators/grant-access.js';
import type { Caller, SecretService } from '../secrets/service.js';
import { parseDuration } from '../secrets/stages.js';
import { mountControlRoutes } from './control-routes.js';
import { errorBody } from './errors.js';
import { mountKeyRoutes } from './key-routes.js';
import { type AppEnv, type ConnectionInfo, jsonBody, parse } from './request.js';
import {
  accessWhatQuery,
  accessWhoQuery,
  batchGetBody,
  destroyBody,
  generateBody,
  idempotencyKeyHeader,
  lifecycleQuery,
  listQuery,
  MAX_BODY_BYTES,
  offboardBody,
  patchBody,
  putBody,
  recoveryQuery,
  rotationBody,
  versionQuery,
} from './schemas.js';

export type { AppEnv, ConnectionInfo } from './request.js';
export { jsonBody, parse } from './request.js';

export interface AppDeps {
  readonly service: SecretService;
  readonly authenticator: Authenticator;
  readonly audit: AuditTrail;
  readonly logger: Logger;
  /** Reads the connection facts the adapter put in the request's env. */
  readonly connection: (c: Context) => ConnectionInfo;
  /** Key administration (`/keys/…` routes). Default: none, the routes answer 404. */
  readonly keyAdmin?: KeyAdmin;
  /**
   * The policy set and revocation list kept fresh from control records, and their admin
   * operations. Default: none (the policy set is fixed and nothing is revoked; unit tests).
   */
  readonly control?: { readonly plane: ControlPlane; readonly admin: ControlAdmin };
  /**
   * Told of every authenticated principal (the principal directory). It must return at once and
   * never throw: the request neither waits for nor fails with it. Default: none.
   */
  readonly directory?: { seen(principal: Principal): void };
  /** The access reports (`/access/what`, `/access/who`). Default: the routes are absent. */
  readonly reports?: AccessReports;
  /** Offboarding (`POST /admin/offboard`). Default: the route is absent. */
  readonly offboarding?: Offboarding;
  /** Answers rotation grants (docs/rotation.md, "Grants"). Default: none, a grant gets 403. */
  readonly grantReader?: GrantReader;
}

class MethodNotAllowedError extends CofferError {
  static override readonly code = 'method_not_allowed';
}

/**
 * Refuses a raw request path that URL parsing would silently rewrite: a `.` or `..` segment (in
 * any `%2e` spelling) or a backslash, which the parser reads as `/`. Without this, a PUT to
 * `/v1/secrets/a/../b` would store `b`, a secret the caller never named.
 */
export function assertNoDotSegments(rawPath: string): void {
  const path = rawPath.split('?', 1)[0] ?? '';
  if (path.includes('\\')) {
    throw new InvalidPathError('path must not contain a backslash');
  }
  for (const segment of path.split('/')) {
    const dots = segment.replace(/%2e/gi, '.');
    if (dots === '.' || dots === '..') throw new InvalidPathError('path has a "." or ".." segment');
  }
}

/** Paths arrive percent-encoded or not; both mean the same secret. */
function decodePath(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new InvalidPathError('path is not valid percent-encoding');
  }
}

/**
 * The Coffer HTTP API v1 (brief §8), served by the local node server and the Lambda handler
 * alike. Routes are mounted under `/v1` and, for SigV4 callers behind API Gateway, `/iam/v1`.
 */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const { service, authenticator, audit, logger } = deps;
  const app = new Hono<AppEnv>();

  // Liveness, answered from memory before any middleware: no storage call and no audit record, so
  // that a load balancer's or orchestrator's probe every few seconds neither fills the audit
  // trail nor costs a write. `/v1/ready` is the authenticated, audited check that touches storage.
  app.get('/v1/health', async (c, next) => {
    // A raw path that URL parsing rewrote into this one (`/v1/x/../health`) is refused and
    // audited like on every route: it goes on down the chain.
    const raw = deps.connection(c).rawPath;
    if (raw !== undefined && raw.split('?', 1)[0] !== '/v1/health') return next();
    c.header('cache-control', 'no-store');
    return c.json({ status: 'ok' });
  });

  app.use('*', async (c, next) => {
    const requestId = randomUUID();
    const connection = deps.connection(c);
    c.set('requestId', requestId);
    c.set('connection', connection);
    const url = new URL(c.req.url);
    const ctx: AuditContext = {
      requestId,
      time: new Date().toISOString(),
      method: c.req.method,
      // The path as sent, when the adapter knows it: a refused `a/../b` is recorded as such.
      route: (connection.rawPath?.split('?', 1)[0] ?? url.pathname).slice(0, 600),
      sourceIp: connection.sourceIp,
      userAgent: (c.req.header('user-agent') ?? '').slice(0, 256),
      // Kept in the record only as keyed HMACs: a query or a client's key may say more than the path.
      sensitive: {
        ...(url.search.length > 1 ? { query: url.search.slice(1, 4097) } : {}),
        ...(c.req.header('idempotency-key')
          ? { idempotencyKey: String(c.req.header('idempotency-key')).slice(0, 512) }
          : {}),
      },
      written: false,
    };
    c.set('audit', ctx);
    // Set before the handler, so that the response it builds carries them: set on a finished
    // response instead, they make the node adapter build that response a second time (a fetch
    // Response and its Headers), on every request. Checked after, in case a handler made its
    // response some other way or changed them.
    c.header('x-request-id', requestId);
    c.header('cache-control', 'no-store');
    await next();
    const sent = c.res.headers;
    if (sent.get('x-request-id') !== requestId) c.header('x-request-id', requestId);
    if (sent.get('cache-control') !== 'no-store') c.header('cache-control', 'no-store');
    // One record per request. For reads it is written before the value leaves: if it cannot be,
    // the value is withheld and the caller gets 503.
    try {
      await audit.finish(ctx, {
        status: c.res.status,
        ...(c.get('errorCode') ? { code: c.get('errorCode') } : {}),
      });
    } catch (err) {
      logger.error('audit write failed', { requestId, ...describeError(err) });
      const { body } = errorBody(new AuditUnavailableError(), requestId);
      c.res = undefined;
      c.res = c.json(body, 503);
      c.header('x-request-id', requestId);
    }
  });

  // After the audit context, so that a refused path is answered and audited like any bad request.
  app.use('*', async (c, next) => {
    const raw = c.get('connection').rawPath;
    if (raw !== undefined) assertNoDotSegments(raw);
    await next();
  });

  app.onError((err, c) => {
    const requestId = c.get('requestId') ?? 'unknown';
    const { status, body } = errorBody(err, requestId);
    if (status >= 500)
      logger.error('request failed', { requestId, code: body.error.code, ...describeError(err) });
    c.set('errorCode', body.error.code);
    // RFC 9110 §11.6.1 / RFC 6750 §3: a 401 names the scheme; it is the same for every failure
    // (no error or error_description that would tell an attacker which check failed). IAM routes
    // are guarded by SigV4 at API Gateway, which has no challenge to offer.
    if (status === 401 && !isIamPath(c.req.path)) {
      c.header('www-authenticate', 'Bearer realm="coffer"');
    }
    return c.json(body, status as 400);
  });

  app.notFound((c) => {
    const requestId = c.get('requestId') ?? 'unknown';
    c.set('errorCode', 'not_found');
    // `reason` tells a client that the address, not a secret, is wrong (the code stays not_found).
    return c.json(
      { error: { code: 'not_found', message: 'no such route', requestId, reason: 'no_route' } },
      404,
    );
  });

  const api = new Hono<AppEnv>();

  const limitBody = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: () => {
      throw new PayloadTooLargeError(`request bodies are limited to ${MAX_BODY_BYTES} bytes`);
    },
  });
  // No route reads the body of a GET or HEAD. Asking the limiter anyway would make the node
  // adapter build a full fetch Request for every read (its `body`), a cost the read path has no use for.
  api.use('*', (c, next) =>
    c.req.method === 'GET' || c.req.method === 'HEAD' ? next() : limitBody(c, next),
  );

  api.use('*', async (c, next) => {
    const ctx = c.get('audit');
    const principal = await authenticator.authenticate({
      authorization: c.get('connection').certificateOnly ? [] : authorizationHeaders(c.req.raw),
      // The path as the router decoded it (`/%69am/v1` is routed as `/iam/v1`), so that the IAM
      // prefix cannot be reached without counting as the IAM prefix.
      path: c.req.path,
      requestId: c.get('requestId'),
      ...(c.get('connection').iamCaller ? { iamCaller: c.get('connection').iamCaller as IamCaller } : {}),
      ...(c.get('connection').clientCertificate
        ? { clientCertificate: c.get('connection').clientCertificate as ClientCertificateInput }
        : {}),
    });
    c.set('principal', principal);
    ctx.principal = principal;
    ctx.authMethod = principal.authMethod;
    const grant = grantOf(principal);
    if (principal.authMethod === 'grant') {
      // A rotation grant reads one stage of one secret (grant-access.ts) and reaches no route.
      if (!grant || !deps.grantReader) throw new ForbiddenError();
      const url = new URL(c.req.url);
      const query: Record<string, string[]> = {};
      for (const key of new Set(url.searchParams.keys())) query[key] = url.searchParams.getAll(key);
      const value = await deps.grantReader.answer(caller(c), grant, {
        method: c.req.method,
        path: decodePath(url.pathname),
        query,
      });
      c.res = c.json(value);
      return;
    }
    deps.directory?.seen(principal);
    if (deps.control) {
      // Before any decision: the set and the list within their bounds, then revocation, which
      // no Cedar permit can override.
      const { plane } = deps.control;
      await plane.ensureFresh();
      const revoked = plane.revocationFor(principal);
      if (revoked) {
        ctx.decision = { allowed: false, policyIds: [`revocation:${revoked.id}`], errors: [] };
        ctx.policySetHash = plane.policySetHash;
        throw new RevokedError();
      }
    }
    await next();
  });

  const caller = (c: Context<AppEnv>): Caller => ({
    principal: c.get('principal'),
    context: {
      authMethod: c.get('principal').authMethod,
      sourceIp: c.get('connection').sourceIp,
      time: Math.floor(Date.now() / 1000),
    },
    audit: c.get('audit'),
  });

  const pathAfter = (c: Context<AppEnv>, marker: string): string => {
    const pathname = new URL(c.req.url).pathname;
    const at = pathname.indexOf(marker);
    if (at === -1) throw new NotFoundError('no such route');
    return decodePath(pathname.slice(at + marker.length));
  };

  api.get('/whoami', (c) => {
    const p = c.get('principal');
    return c.json({
      type: p.type,
      id: p.id,
      entity: `Coffer::${p.type}::${JSON.stringify(p.id)}`,
      groups: p.groups,
      attributes: p.attributes,
      authMethod: p.authMethod,
      ...(p.issuer ? { issuer: p.issuer } : {}),
      ...(p.kind ? { kind: p.kind } : {}),
    });
  });

  api.get('/ready', async (c) => c.json(await service.ready()));

  api.put('/secrets/*', async (c) => {
    const path = pathAfter(c, '/secrets/');
    const key = parse(idempotencyKeyHeader, c.req.header('idempotency-key'), 'Idempotency-Key header');
    const body = parse(putBody, await jsonBody(c), 'body');
    return c.json(await service.put(caller(c), path, body, key));
  });

  // The generated value never leaves: the answer holds its version and public metadata only.
  api.post('/generate/*', async (c) => {
    const path = pathAfter(c, '/generate/');
    const key = parse(idempotencyKeyHeader, c.req.header('idempotency-key'), 'Idempotency-Key header');
    const body = parse(generateBody, await jsonBody(c), 'body');
    return c.json(await service.generate(caller(c), path, body, key));
  });

  api.get('/secrets/*', async (c) => {
    const path = pathAfter(c, '/secrets/');
    const { version, stage } = parse(versionQuery, c.req.query(), 'query');
    return c.json(await service.get(caller(c), path, version, stage));
  });

  api.delete('/secrets/*', async (c) => {
    const path = pathAfter(c, '/secrets/');
    const { recoveryDays } = parse(recoveryQuery, c.req.query(), 'query');
    return c.json(await service.delete(caller(c), path, recoveryDays));
  });

  api.post('/restore/*', async (c) => c.json(await service.restore(caller(c), pathAfter(c, '/restore/'))));

  api.post('/purge/*', async (c) => c.json(await service.purge(caller(c), pathAfter(c, '/purge/'))));

  api.post('/destroy/*', async (c) => {
    const path = pathAfter(c, '/destroy/');
    const body = parse(destroyBody, await jsonBody(c), 'body');
    return c.json(await service.destroy(caller(c), path, body.versions));
  });

  api.get('/meta/*', async (c) => c.json(await service.getMetadata(caller(c), pathAfter(c, '/meta/'))));

  api.patch('/meta/*', async (c) => {
    const path = pathAfter(c, '/meta/');
    const body = parse(patchBody, await jsonBody(c), 'body');
    return c.json(await service.patchMetadata(caller(c), path, body));
  });

  // Setting or clearing a built-in-generator rotation policy is `writeMetadata`; naming an
  // external rotator (or changing a policy that names one) is `admin`.
  api.put('/rotation/*', async (c) => {
    const path = pathAfter(c, '/rotation/');
    const body = parse(rotationBody, await jsonBody(c), 'body');
    return c.json(
      await service.setRotation(caller(c), path, {
        every: body.every,
        ...(body.rotateImmediately !== undefined ? { rotateImmediately: body.rotateImmediately } : {}),
        ...(body.webhook !== undefined ? { webhook: body.webhook } : {}),
        ...(body.lambdaArn !== undefined ? { lambdaArn: body.lambdaArn } : {}),
        ...(body.renewBefore !== undefined ? { renewBefore: body.renewBefore } : {}),
      }),
    );
  });

  api.delete('/rotation/*', async (c) =>
    c.json(await service.clearRotation(caller(c), pathAfter(c, '/rotation/'))),
  );

  // Rotating now is `write`. 202: the answer is the rotation's state (a built-in generator's
  // rotation has finished by then).
  // Moving current back to previous is `write` too; it writes no version.
  api.post('/revert/*', async (c) => c.json(await service.revert(caller(c), pathAfter(c, '/revert/'))));

  api.post('/rotate/*', async (c) => c.json(await service.rotate(caller(c), pathAfter(c, '/rotate/')), 202));

  // Listings by lifecycle (Cedar `list` per secret), each one Query of its index.
  api.get('/lifecycle/rotation-overdue', async (c) => {
    const q = parse(lifecycleQuery, c.req.query(), 'query');
    return c.json(
      await service.lifecycle(
        caller(c),
        { kind: 'rotation-overdue' },
        {
          prefix: q.prefix,
          limit: q.limit,
          ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
        },
      ),
    );
  });
  api.get('/lifecycle/expiring', async (c) => {
    const q = parse(lifecycleQuery, c.req.query(), 'query');
    const withinSeconds = parseDuration(q.within) as number;
    return c.json(
      await service.lifecycle(
        caller(c),
        { kind: 'expiring', withinSeconds },
        {
          prefix: q.prefix,
          limit: q.limit,
          ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
        },
      ),
    );
  });

  api.post('/batch-get', async (c) => {
    const body = parse(batchGetBody, await jsonBody(c), 'body');
    return c.json({ results: await service.batchGet(caller(c), body.paths) });
  });

  api.get('/list', async (c) => {
    const q = parse(listQuery, c.req.query(), 'query');
    return c.json(
      await service.list(caller(c), {
        prefix: q.prefix,
        limit: q.limit,
        ...(q.delimiter !== undefined ? { delimiter: q.delimiter } : {}),
        ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
      }),
    );
  });

  if (deps.keyAdmin) mountKeyRoutes(api, deps.keyAdmin, caller, jsonBody);
  if (deps.control) mountControlRoutes(api, deps.control, caller);
  const reports = deps.reports;
  if (reports) {
    api.get('/access/what', async (c) => {
      const q = parse(accessWhatQuery, c.req.query(), 'query');
      return c.json(
        await reports.what(caller(c), {
          principal: q.principal,
          prefix: q.prefix,
          ...(q.groups !== undefined ? { groups: q.groups } : {}),
          ...(q.limit !== undefined ? { limit: q.limit } : {}),
          ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
        }),
      );
    });
    api.get('/access/who', async (c) => {
      const q = parse(accessWhoQuery, c.req.query(), 'query');
      return c.json(await reports.who(caller(c), q));
    });
  }

  const offboarding = deps.offboarding;
  if (offboarding) {
    api.post('/admin/offboard', async (c) => {
      const body = parse(offboardBody, await jsonBody(c), 'body');
      return c.json(
        await offboarding.offboard(caller(c), {
          principal: body.principal,
          ...(body.days !== undefined ? { days: body.days } : {}),
          ...(body.since !== undefined ? { since: body.since } : {}),
          ...(body.reason !== undefined ? { reason: body.reason } : {}),
          ...(body.rotate !== undefined ? { rotate: body.rotate } : {}),
        }),
      );
    });
  }

  for (const route of [
    '/whoami',
    '/ready',
    '/secrets/*',
    '/generate/*',
    '/restore/*',
    '/purge/*',
    '/destroy/*',
    '/meta/*',
    '/rotation/*',
    '/rotate/*',
    '/revert/*',
    '/lifecycle/rotation-overdue',
    '/lifecycle/expiring',
    '/list',
    '/batch-get',
    ...(reports ? ['/access/what', '/access/who'] : []),
    ...(offboarding ? ['/admin/offboard'] : []),
  ]) {
    api.all(route, () => {
      throw new MethodNotAllowedError('method not allowed on this route');
    });
  }

  app.route('/v1', api);
  app.route('/iam/v1', api);
  return app;
}

/** Every Authorization header, unfolded: Fetch joins repeated headers with ", ". */
function authorizationHeaders(req: Request): string[] {
  const value = req.headers.get('authorization');
  if (value === null) return [];
  return value.split(/,\s*/);
}

export type CofferApp = ReturnType<typeof createApp>;
