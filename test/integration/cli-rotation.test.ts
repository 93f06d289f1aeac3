import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '../../lib/cli/main.js';
import { WebhookInvoker } from '../../lib/secrets/rotators/webhook.js';
import { createHarness, type Harness } from '../support/harness.js';
import { TestRotator } from '../support/webhook-rotator.js';

/* `coffer rotate`, `coffer rotation set|show|clear` and `coffer get --stage` against the app. */

let h: Harness;
let server: ServerType;
let dir: string;

const rotator = new TestRotator();

beforeAll(async () => {
  await rotator.start();
  h = await createHarness({ label: 'clirot', rotators: { webhooks: new WebhookInvoker() } });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  dir = await mkdtemp(join(tmpdir(), 'coffer-clirot-'));
});

afterAll(async () => {
  await rotator.stop();
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

async function cli(args: string[]) {
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
  return { code: await runCli(args, io), ...o };
}

describe('coffer rotate and coffer rotation', () => {
  it('when a generated secret is rotated, get returns the new value and get --stage previous the old one', async () => {
    expect((await cli(['generate', 'c/db', '--type', 'password', '--length', '24'])).code).toBe(0);
    const before = await cli(['get', 'c/db']);
    const rotated = await cli(['--json', 'rotate', 'c/db', '--wait']);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(JSON.parse(rotated.stdout)).toMatchObject({ state: 'finished', version: 2 });
    const after = await cli(['get', 'c/db']);
    expect(after.stdout).not.toBe(before.stdout);
    expect((await cli(['get', 'c/db', '--stage', 'previous'])).stdout).toBe(before.stdout);
    expect((await cli(['get', 'c/db', '--stage', 'current'])).stdout).toBe(after.stdout);
    expect((await cli(['get', 'c/db', '--stage', 'newest'])).code).not.toBe(0);
  });

  it('when a policy is set, show prints it and clear removes it', async () => {
    expect((await cli(['generate', 'c/api', '--type', 'password'])).code).toBe(0);
    const set = await cli(['rotation', 'set', 'c/api', '--every', '30d']);
    expect(set.code, set.stderr).toBe(0);
    const shown = await cli(['--json', 'rotation', 'show', 'c/api']);
    expect(JSON.parse(shown.stdout)).toMatchObject({ stages: { current: 1 }, rotation: { every: '30d' } });
    expect((await cli(['rotation', 'set', 'c/api', '--every', 'monthly'])).code).not.toBe(0);
    expect((await cli(['rotation', 'clear', 'c/api'])).code).toBe(0);
    expect((await cli(['rotation', 'show', 'c/api'])).stdout).toContain('no rotation policy');
  });

  it('when asked for expiring certificates or overdue rotations, ls lists them from the server', async () => {
    const gen = await cli([
      'generate',
      'c/cert',
      '--type',
      'certificate',
      '--cn',
      'c.example',
      '--validity-days',
      '10',
    ]);
    expect(gen.code, gen.stderr).toBe(0);
    const expiring = await cli(['--json', 'ls', 'c/', '--expiring', '30d']);
    expect(expiring.code, expiring.stderr).toBe(0);
    expect(JSON.parse(expiring.stdout).items.map((i: { path: string }) => i.path)).toEqual(['c/cert']);
    expect((await cli(['ls', 'c/', '--expiring', '5d'])).stdout).toBe('');
    const overdue = await cli(['--json', 'ls', '--rotation-overdue']);
    expect(overdue.code, overdue.stderr).toBe(0);
    expect(JSON.parse(overdue.stdout).items).toEqual([]);
  });

  it('when a policy names a webhook, rotate goes through it, a failed step exits non-zero and show says where it stopped', async () => {
    expect((await cli(['generate', 'c/hooked', '--type', 'password'])).code).toBe(0);
    const set = await cli(['rotation', 'set', 'c/hooked', '--every', '30d', '--webhook', rotator.url]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain(`rotator: webhook ${rotator.url}`);
    const remote = await cli([
      'rotation',
      'set',
      'c/hooked',
      '--every',
      '30d',
      '--webhook',
      'https://example.com/x',
    ]);
    expect(remote.code).not.toBe(0);
    expect(remote.stderr).toContain('loopback');
    rotator.behave = (call) => ({ status: call.step === 'testSecret' ? 500 : 200 });
    const failed = await cli(['rotate', 'c/hooked']);
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain('testSecret');
    expect((await cli(['rotation', 'show', 'c/hooked'])).stdout).toContain(
      'pending version 2: failed at testSecret',
    );
    rotator.behave = () => ({ status: 200 });
    const resumed = await cli(['--json', 'rotate', 'c/hooked', '--wait']);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ state: 'finished', version: 2 });
    const reverted = await cli(['rotate', '--revert', 'c/hooked']);
    expect(reverted.code, reverted.stderr).toBe(0);
    expect(rotator.calls.map((c) => c.step)).toEqual([
      'setSecret',
      'testSecret',
      'testSecret',
      'revertSecret',
    ]);
  });
});
