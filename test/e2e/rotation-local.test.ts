import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { localSettings } from '../../lib/config.js';
import { type LocalServer, startLocalServer } from '../../lib/local/server.js';
import { silentLogger } from '../../lib/log.js';
import { freshTableNames } from '../support/dynamo.js';
import { TestRotator } from '../support/webhook-rotator.js';

/** The fields of the answers this test reads. */
interface Answer {
  currentVersion?: number;
  certificate?: { serial: string; subject: string; notAfter: string };
  stages?: unknown;
  rotation: { nextAt: string };
  value?: string;
}

/*
 * One server for the file, on the run's DynamoDB Local with tables of its own: what is tested is
 * the server's rotation interval, not its Java (test/e2e/local-server.test.ts and
 * dynamodb-supervisor.test.ts start and supervise that). Each test rotates secrets of its own.
 */
let server: LocalServer | undefined;
let token = '';
const rotator = new TestRotator();
beforeAll(async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-rotation-e2e-'));
  await rotator.start();
  server = await startLocalServer(
    {
      ...localSettings({ COFFER_DATA_DIR: dataDir, COFFER_DYNAMODB_ENDPOINT: inject('dynamodbEndpoint') }),
      tables: freshTableNames('rotation-e2e'),
      port: 0,
    },
    silentLogger,
    undefined,
    { auditSink: () => {}, rotationIntervalMs: 200 },
  );
  token = (await readFile(server.tokenFile, 'utf8')).trim();
});
afterAll(async () => {
  await server?.stop();
  await rotator.stop();
});

async function call(method: string, path: string, body?: unknown, bearer = token) {
  const res = await fetch(`${server?.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Answer & { version?: number } };
}

describe('the local server rotates what is due', () => {
  it('when a rotation policy is due, its interval rotates the secret with its generator', async () => {
    expect((await call('POST', '/v1/generate/e2e/rotated', { type: 'password', length: 24 })).status).toBe(
      200,
    );
    const first = (await call('GET', '/v1/secrets/e2e/rotated')).body;
    const set = await call('PUT', '/v1/rotation/e2e/rotated', { every: '1d', rotateImmediately: true });
    expect(set.status).toBe(200);
    let meta = set.body;
    for (let i = 0; i < 50 && meta.currentVersion !== 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      meta = (await call('GET', '/v1/meta/e2e/rotated')).body;
    }
    expect(meta.stages).toEqual({ current: 2, previous: 1 });
    expect(Date.parse(meta.rotation.nextAt)).toBeGreaterThan(Date.now() + 86_000_000);
    expect((await call('GET', '/v1/secrets/e2e/rotated?stage=previous')).body.value).toBe(first.value);
    expect((await call('GET', '/v1/secrets/e2e/rotated')).body.value).not.toBe(first.value);

    // A certificate issued by a CA secret: the interval re-issues it from that CA.
    const ca = await call('POST', '/v1/generate/e2e/ca', {
      type: 'certificate',
      commonName: 'E2E CA',
      validityDays: 30,
      ca: true,
      allowedNames: ['*.e2e.example'],
    });
    expect(ca.status).toBe(200);
    const leaf = await call('POST', '/v1/generate/e2e/leaf', {
      type: 'certificate',
      commonName: 'svc.e2e.example',
      validityDays: 7,
      issuer: 'e2e/ca',
    });
    expect(leaf.status).toBe(200);
    const setLeaf = await call('PUT', '/v1/rotation/e2e/leaf', { every: '365d', rotateImmediately: true });
    expect(setLeaf.status).toBe(200);
    let leafMeta = setLeaf.body;
    for (let i = 0; i < 50 && leafMeta.currentVersion !== 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      leafMeta = (await call('GET', '/v1/meta/e2e/leaf')).body;
    }
    expect(leafMeta.currentVersion).toBe(2);
    expect(leafMeta.certificate?.subject).toBe(leaf.body.certificate?.subject);
    expect(leafMeta.certificate?.serial).not.toBe(leaf.body.certificate?.serial);
    // Due again 30 days (the default lead time, capped at half of 7 days) before its end.
    expect(leafMeta.rotation.nextAt).toBe(
      new Date(
        Date.parse(leafMeta.certificate?.notAfter as string) - 3.5 * 86_400_000 - 150_000,
      ).toISOString(),
    );
    const pem = async (path: string) =>
      JSON.parse((await call('GET', `/v1/secrets/${path}`)).body.value as string).certificate as string;
    const dir = await mkdtemp(join(tmpdir(), 'coffer-rotation-e2e-pem-'));
    try {
      await writeFile(join(dir, 'ca.pem'), await pem('e2e/ca'));
      await writeFile(join(dir, 'leaf.pem'), await pem('e2e/leaf'));
      const out = await promisify(execFile)('openssl', [
        'verify',
        '-CAfile',
        join(dir, 'ca.pem'),
        join(dir, 'leaf.pem'),
      ]);
      expect(out.stdout).toMatch(/leaf\.pem: OK/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    // Certificates are generated, rotated and checked with openssl: room for a busy machine.
  }, 60_000);

  it('when a due rotation policy names a loopback webhook, the interval runs its steps with grants the server answers', async () => {
    const read: { step: string; status: number; value?: string }[] = [];
    rotator.behave = async (c) => {
      const res = await call('GET', `/v1/secrets/${c.path}?stage=${c.stage}`, undefined, c.grant);
      const current = await call('GET', `/v1/secrets/${c.path}`, undefined, c.grant);
      read.push({ step: c.step, status: res.status, ...(res.body.value ? { value: res.body.value } : {}) });
      read.push({ step: `${c.step}:current`, status: current.status });
      return { status: 204 };
    };
    expect((await call('POST', '/v1/generate/e2e/hooked', { type: 'password', length: 24 })).status).toBe(
      200,
    );
    const first = (await call('GET', '/v1/secrets/e2e/hooked')).body;
    const remote = await call('PUT', '/v1/rotation/e2e/hooked', {
      every: '1d',
      webhook: 'https://example.com/r',
    });
    expect(remote.status).toBe(400);
    const set = await call('PUT', '/v1/rotation/e2e/hooked', {
      every: '1d',
      rotateImmediately: true,
      webhook: rotator.url,
    });
    expect(set.status).toBe(200);
    let meta = set.body;
    for (let i = 0; i < 100 && meta.currentVersion !== 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      meta = (await call('GET', '/v1/meta/e2e/hooked')).body;
    }
    expect(meta.stages).toEqual({ current: 2, previous: 1 });
    const now = (await call('GET', '/v1/secrets/e2e/hooked')).body.value;
    expect(now).not.toBe(first.value);
    expect(read).toEqual([
      { step: 'setSecret', status: 200, value: now },
      { step: 'setSecret:current', status: 403 },
      { step: 'testSecret', status: 200, value: now },
      { step: 'testSecret:current', status: 403 },
    ]);
  });
});
