import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TransactWriteItem } from '@aws-sdk/client-dynamodb';
import { type HttpBindings, type ServerType, serve } from '@hono/node-server';
import type { Context } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type AuditContext,
  type AuditOutcome,
  type AuditTrail,
  NoAuditTrail,
} from '../../lib/audit/trail.js';
import { assertNoDotSegments } from '../../lib/http/app.js';
import { connectionFromIncoming } from '../../lib/local/server.js';
import { createHarness, type Harness } from '../support/harness.js';

/** Keeps every finished request's audit context and outcome. */
class RecordingTrail implements AuditTrail {
  readonly finished: { ctx: AuditContext; outcome: AuditOutcome }[] = [];
  private readonly none = new NoAuditTrail();
  withChange<T>(ctx: AuditContext, run: (items: TransactWriteItem[]) => Promise<T>): Promise<T> {
    return this.none.withChange(ctx, run);
  }
  async finish(ctx: AuditContext, outcome: AuditOutcome): Promise<void> {
    this.finished.push({ ctx, outcome });
  }
}

const trail = new RecordingTrail();
let h: Harness;
let server: ServerType;
let port: number;

beforeAll(async () => {
  h = await createHarness({
    label: 'rawpath',
    audit: trail,
    connection: (c: Context) => connectionFromIncoming(c.env as HttpBindings),
  });
  server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
  });
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** The response fields these tests read. */
interface Reply {
  readonly error: { code: string; message: string; requestId: string };
  readonly items: { path: string }[];
  readonly value?: string;
}

/** A request sent with its target exactly as given: fetch would normalize dot segments first. */
function raw(
  method: string,
  target: string,
  body?: string,
): Promise<{ status: number; body: Reply; requestId: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: target,
        headers: {
          authorization: `Bearer ${h.token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: Reply;
          try {
            parsed = JSON.parse(text) as Reply;
          } catch {
            parsed = { error: { code: 'not_json', message: text, requestId: '' }, items: [] };
          }
          resolve({
            status: res.statusCode ?? 0,
            body: parsed,
            requestId: res.headers['x-request-id'] as string | undefined,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('dot segments in the raw request path', () => {
  const dotted = [
    'a/../b',
    'a/./b',
    'a/%2e%2e/b',
    'a/%2E%2E/b',
    'a/%2E/b',
    'a/.%2e/b',
    'a/%2e./b',
    '../b',
    './b',
    'a/b/..',
    'a/b/.',
  ];

  it('when a PUT names a path with a . or .. segment, it answers 400 invalid_path and stores nothing', async () => {
    for (const path of dotted) {
      const res = await raw('PUT', `/v1/secrets/${path}`, '{"value":"dotted"}');
      expect(res.status, path).toBe(400);
      expect(res.body.error.code, path).toBe('invalid_path');
      expect(res.body.error.requestId).toBe(res.requestId);
    }
    for (const path of ['b', 'a/b', 'a', 'a/b/c']) {
      expect((await h.call('GET', `/v1/secrets/${path}`)).status, path).toBe(404);
    }
    expect((await h.call('GET', '/v1/list')).body.items).toEqual([]);
  });

  it('when another route carries a dot segment, it is refused the same way, before authentication', async () => {
    await h.call('PUT', '/v1/secrets/x/y', { body: { value: 'kept' } });
    for (const [method, target] of [
      ['GET', '/v1/secrets/x/../x/y'],
      ['GET', '/v1/meta/x/./y'],
      ['DELETE', '/v1/secrets/x/%2e%2e/x/y'],
      ['POST', '/v1/restore/./x/y'],
      ['GET', '/v1/./whoami'],
      ['GET', '/iam/v1/../../v1/secrets/x/y'],
      ['GET', '/v1/list/..?prefix=x/'],
    ] as const) {
      const res = await raw(method, target);
      expect(res.status, target).toBe(400);
      expect(res.body.error.code, target).toBe('invalid_path');
    }
    expect((await h.call('GET', '/v1/secrets/x/y')).body.value).toBe('kept');
  });

  it('when health is reached through a dot segment, it is refused and audited, not answered from memory', async () => {
    for (const target of ['/v1/x/../health', '/v1/./health', '/iam/v1/../../v1/health']) {
      const res = await raw('GET', target);
      expect(res.status, target).toBe(400);
      expect(res.body.error.code, target).toBe('invalid_path');
      const record = trail.finished.find((f) => f.ctx.requestId === res.requestId);
      expect(record?.ctx.route, target).toBe(target);
    }
    const plain = await raw('GET', '/v1/health');
    expect(plain.status).toBe(200);
    expect(plain.requestId).toBeUndefined();
  });

  it('when a path is refused, the request still gets its audit record, with the path as sent', async () => {
    const res = await raw('PUT', '/v1/secrets/audited/../other', '{"value":"x"}');
    expect(res.status).toBe(400);
    const record = trail.finished.find((f) => f.ctx.requestId === res.requestId);
    expect(record?.outcome).toEqual({ status: 400, code: 'invalid_path' });
    expect(record?.ctx.route).toBe('/v1/secrets/audited/../other');
  });

  it('when segments only contain dots among other characters, they are ordinary names', async () => {
    for (const path of ['a/..b/c', 'a/b../c', 'a/.env', 'a/...', 'a/%2e%2e%2e']) {
      const res = await raw('PUT', `/v1/secrets/${path}`, '{"value":"fine"}');
      expect(res.status, path).toBe(200);
    }
    expect((await h.call('GET', '/v1/secrets/a/...')).body.value).toBe('fine');
    expect((await h.call('GET', '/v1/secrets/a/.env')).body.value).toBe('fine');
  });

  it('when a query string holds dots, only the path is checked', async () => {
    // A string prefix may end inside a name: `a/..` matches `a/..b/c`.
    const partial = await raw('GET', '/v1/list?prefix=a/..');
    expect(partial.status).toBe(200);
    expect(partial.body.items.map((i) => i.path)).toEqual(['a/...', 'a/..b/c']);
    // A whole `..` folder can hold nothing: the prefix rules refuse it.
    for (const prefix of ['../', 'a/../', './a', 'a/./b']) {
      const res = await raw('GET', `/v1/list?prefix=${prefix}`);
      expect(res.status, prefix).toBe(400);
      expect(res.body.error.code, prefix).toBe('invalid_path');
    }
    expect((await raw('GET', '/v1/list?cursor=a/../b&prefix=a/')).body.error.code).toBe('invalid_cursor');
  });
});

describe('assertNoDotSegments', () => {
  it('passes ordinary paths and refuses dot segments and backslashes', () => {
    expect(() => assertNoDotSegments('/v1/secrets/a/b.c/..d?x=..')).not.toThrow();
    for (const bad of ['/v1/secrets/..', '/v1/%2E%2e/x', '/v1/secrets/a/./b', '/v1/secrets/a\\b']) {
      expect(() => assertNoDotSegments(bad), bad).toThrow(/segment|backslash/);
    }
  });

  it('reads the request target of the node server without its query, also in absolute form', () => {
    const env = (url: string) =>
      ({ incoming: { url, socket: { remoteAddress: '127.0.0.1' } } }) as unknown as HttpBindings;
    expect(connectionFromIncoming(env('/v1/secrets/a/../b?x=1'))).toEqual({
      sourceIp: '127.0.0.1',
      rawPath: '/v1/secrets/a/../b',
    });
    expect(connectionFromIncoming(env('http://127.0.0.1:8270/v1/a/./b')).rawPath).toBe('/v1/a/./b');
  });
});
