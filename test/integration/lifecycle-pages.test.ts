import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { PutItemCommand } from '@aws-sdk/client-dynamodb';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '../../lib/cli/main.js';
import { createHarness, type Harness } from '../support/harness.js';

/* Lifecycle listings page like `list`: limit + opaque cursor; the CLI walks every page. */

const MINUTE = 60_000;
let clock = Date.parse('2026-05-01T00:00:00Z');
let h: Harness;
let server: ServerType;
let dir: string;
/** More overdue rotations than one default page (100) holds. */
const OVERDUE = 105;
const CERTS = 7;

/** One after another: concurrent first writes into one folder are not what this file tests. */
async function each(count: number, make: (i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < count; i++) await make(i);
}

beforeAll(async () => {
  h = await createHarness({ label: 'lcpages', now: () => new Date(clock) });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  dir = await mkdtemp(join(tmpdir(), 'coffer-lcpages-'));
  await each(OVERDUE, async (i) => {
    const path = `due/s${String(i).padStart(3, '0')}`;
    const gen = await h.call('POST', `/v1/generate/${path}`, { body: { type: 'password', length: 16 } });
    expect(gen.status, gen.text).toBe(200);
    const set = await h.call('PUT', `/v1/rotation/${path}`, { body: { every: `${1 + (i % 5)}m` } });
    expect(set.status, set.text).toBe(200);
  });
  await each(CERTS, async (i) => {
    const res = await h.call('POST', `/v1/generate/certs/c${i}`, {
      body: { type: 'certificate', commonName: `c${i}.example.com`, validityDays: 5 + i },
    });
    expect(res.status, res.text).toBe(200);
  });
  // Not due, not expiring soon, outside the prefixes: never listed.
  await h.call('POST', '/v1/generate/certs-later/x', {
    body: { type: 'certificate', commonName: 'x.example.com', validityDays: 365 },
  });
  clock += 10 * MINUTE;
  // Over 200 writes one after another: generous on a loaded machine.
}, 240_000);

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

async function walk(route: string, limit: number): Promise<{ paths: string[]; pages: number[] }> {
  const paths: string[] = [];
  const pages: number[] = [];
  let cursor: string | undefined;
  do {
    const sep = route.includes('?') ? '&' : '?';
    const res = await h.call(
      'GET',
      `${route}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    expect(res.status, res.text).toBe(200);
    pages.push(res.body.items.length);
    paths.push(...res.body.items.map((i: { path: string }) => i.path));
    cursor = res.body.cursor;
  } while (cursor);
  return { paths, pages };
}

describe('lifecycle listing pages', () => {
  it('when overdue rotations span several pages, every one is listed once, soonest first', async () => {
    const { paths, pages } = await walk('/v1/lifecycle/rotation-overdue?prefix=due/', 40);
    expect(pages).toEqual([40, 40, 25]);
    expect(new Set(paths).size).toBe(OVERDUE);
    expect(paths.length).toBe(OVERDUE);
    const all = (await h.call('GET', '/v1/lifecycle/rotation-overdue?prefix=due/&limit=1000')).body;
    expect(all.cursor).toBeUndefined();
    const due = all.items.map((i: { nextAt: string }) => i.nextAt);
    expect([...due].sort()).toEqual(due);
  });

  it('when expiring certificates span several pages, every one is listed once; a full last page has no cursor', async () => {
    const { paths, pages } = await walk('/v1/lifecycle/expiring?prefix=certs/&within=30d', 3);
    expect(pages).toEqual([3, 3, 1]);
    expect([...paths].sort()).toEqual(Array.from({ length: CERTS }, (_, i) => `certs/c${i}`));
    const exact = await walk('/v1/lifecycle/expiring?prefix=certs/&within=30d', CERTS);
    expect(exact.pages).toEqual([CERTS]);
  });

  it('when stale index entries and other prefixes lie between the pages, they are skipped and nothing repeats', async () => {
    // A table writer's entries: one for a secret whose head says otherwise, one with no head.
    for (const [path, at] of [
      ['certs/c1', '2026-05-02T00:00:00.000Z'],
      ['certs/ghost', '2026-05-03T00:00:00.000Z'],
    ] as const) {
      await h.client.send(
        new PutItemCommand({
          TableName: h.tables.secrets,
          Item: { pk: { S: 'EXP' }, sk: { S: `${at}#${path}` }, path: { S: path }, notAfter: { S: at } },
        }),
      );
    }
    const { paths } = await walk('/v1/lifecycle/expiring?within=30d', 2);
    expect([...paths].sort()).toEqual(Array.from({ length: CERTS }, (_, i) => `certs/c${i}`));
  });

  it('when a cursor is used with another window or prefix, or edited, it is 400 invalid_cursor', async () => {
    const first = await h.call('GET', '/v1/lifecycle/expiring?prefix=certs/&within=30d&limit=2');
    const cursor = encodeURIComponent(first.body.cursor);
    for (const route of [
      `/v1/lifecycle/expiring?prefix=certs/&within=20d&limit=2&cursor=${cursor}`,
      `/v1/lifecycle/expiring?prefix=cert&within=30d&limit=2&cursor=${cursor}`,
      `/v1/lifecycle/rotation-overdue?prefix=certs/&limit=2&cursor=${cursor}`,
      `/v1/lifecycle/expiring?prefix=certs/&within=30d&limit=2&cursor=x${cursor}`,
    ]) {
      const res = await h.call('GET', route);
      expect(res.status, route).toBe(400);
      expect(res.body.error.code).toBe('invalid_cursor');
    }
  });

  it('when coffer ls --rotation-overdue has more than one page to show, it shows every secret once', async () => {
    const o = { stdout: '', stderr: '' };
    const io: CliIo = {
      env: {
        COFFER_ADDR: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        COFFER_TOKEN: h.token,
        COFFER_DATA_DIR: join(dir, 'data'),
      },
      cwd: dir,
      stdin: Readable.from([]),
      stdout: { write: (s: string) => (o.stdout += s) },
      stderr: { write: (s: string) => (o.stderr += s) },
    };
    expect(await runCli(['--json', 'ls', 'due/', '--rotation-overdue'], io), o.stderr).toBe(0);
    const items = JSON.parse(o.stdout).items as { path: string }[];
    expect(items).toHaveLength(OVERDUE);
    expect(new Set(items.map((i) => i.path)).size).toBe(OVERDUE);
    o.stdout = '';
    expect(await runCli(['ls', 'certs/', '--expiring', '30d'], io), o.stderr).toBe(0);
    expect(o.stdout.trim().split('\n')).toHaveLength(CERTS);
  });
});
