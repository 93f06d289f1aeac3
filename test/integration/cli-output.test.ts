import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '../../lib/cli/main.js';
import { createHarness, type Harness } from '../support/harness.js';

let h: Harness;
let server: ServerType;
let dir: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  h = await createHarness({ label: 'clioutput' });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  dir = await mkdtemp(join(tmpdir(), 'coffer-output-'));
  env = {
    COFFER_ADDR: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    COFFER_TOKEN: h.token,
    COFFER_DATA_DIR: join(dir, 'data'),
  };
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

async function cli(args: string[]) {
  const o = { stdout: '', stderr: '' };
  const io: CliIo = {
    env,
    cwd: dir,
    stdin: Readable.from([]),
    stdout: { write: (s: string) => (o.stdout += s) },
    stderr: { write: (s: string) => (o.stderr += s) },
  };
  return { code: await runCli(args, io), ...o };
}

describe('coffer --quiet and --json', () => {
  it('when --quiet is given, confirmations are left out but what was asked for is printed', async () => {
    expect(await cli(['--quiet', 'put', 'out/db/password', 'pw-1'])).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
    expect((await cli(['--quiet', 'get', 'out/db/password'])).stdout).toBe('pw-1');
    expect((await cli(['--quiet', 'ls', '-r', 'out/'])).stdout).toBe('out/db/password\n');
    expect((await cli(['--quiet', 'ls', 'out/'])).stdout).toBe('out/db/\n');
    expect((await cli(['--quiet', 'history', 'out/db/password'])).stdout).toContain('current version 1');
    expect((await cli(['--quiet', 'whoami'])).stdout).toContain('dev:dev-admin');
    expect(await cli(['--quiet', 'rm', 'out/db/password'])).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(await cli(['--quiet', 'restore', 'out/db/password'])).toEqual({ code: 0, stdout: '', stderr: '' });
    // Errors are still said.
    const missing = await cli(['--quiet', 'get', 'out/none']);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/^coffer: secret not found \(not_found, request id [0-9a-f-]{36}\)\n$/);
  });

  it('when --json is given, every command that reports a result prints one JSON document', async () => {
    const runs: [string[], (v: Record<string, unknown>) => void][] = [
      [['put', 'out/j', 'v1'], (v) => expect(v).toMatchObject({ path: 'out/j', version: 1 })],
      [['put', 'out/j', 'v2'], (v) => expect(v).toMatchObject({ version: 2 })],
      [['get', 'out/j'], (v) => expect(v).toMatchObject({ path: 'out/j', version: 2, value: 'v2' })],
      [['ls', 'out/'], (v) => expect(v).toMatchObject({ folders: ['out/db/'] })],
      [['history', 'out/j'], (v) => expect(v).toMatchObject({ currentVersion: 2 })],
      [['destroy', 'out/j', '--versions', '1'], (v) => expect(v).toEqual({ path: 'out/j', destroyed: [1] })],
      [['rm', 'out/j'], (v) => expect(v).toMatchObject({ path: 'out/j' })],
      [['restore', 'out/j'], (v) => expect(v).toEqual({ path: 'out/j', version: 2 })],
      [['whoami'], (v) => expect(v).toMatchObject({ id: 'dev:dev-admin' })],
    ];
    for (const [args, check] of runs) {
      const r = await cli(['--json', ...args]);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stderr).toBe('');
      check(JSON.parse(r.stdout));
    }
    const failed = await cli(['--json', 'get', 'out/none']);
    expect(failed.code).toBe(3);
    expect(failed.stdout).toBe('');
    expect(JSON.parse(failed.stderr)).toEqual({
      error: {
        code: 'not_found',
        message: 'secret not found',
        requestId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      },
    });
  });
});
