import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '../../lib/cli/main.js';
import { createHarness, type Harness } from '../support/harness.js';

let h: Harness;
let server: ServerType;
let addr: string;

beforeAll(async () => {
  h = await createHarness({ label: 'clikeys' });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  addr = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await writeFile(join(h.dataDir, 'dev-token'), `${h.token}\n`, { mode: 0o600 });
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

async function cli(args: string[], tty = false) {
  const o = { stdout: '', stderr: '' };
  const io: CliIo = {
    env: { COFFER_ADDR: addr, COFFER_DATA_DIR: h.dataDir, COFFER_LOGIN_CACHE: '/nonexistent' },
    cwd: h.dataDir,
    stdin: Object.assign(Readable.from([]), { isTTY: false }),
    stdout: { write: (s: string) => (o.stdout += s), isTTY: false },
    stderr: Object.assign({ write: (s: string) => (o.stderr += s) }, tty ? { isTTY: true } : {}),
  };
  const code = await runCli(args, io);
  return { code, ...o };
}

describe('coffer keys', () => {
  it('when a folder is rotated, re-wrapped with a progress bar and its old key retired, each step says what it did', async () => {
    for (let i = 0; i < 5; i++) expect((await cli(['put', `ops/s${i}`, `v${i}`])).code).toBe(0);
    // A first scan, so the bar knows how many versions to expect.
    expect((await cli(['keys', 'rewrap'])).code).toBe(0);
    const rotate = await cli(['keys', 'rotate', '--folder', 'ops']);
    expect(rotate.stdout).toBe('ops: bk:ops:1 -> bk:ops:2\n');
    const rewrap = await cli(['keys', 'rewrap', '--folder', 'ops'], true);
    expect(rewrap.code, rewrap.stderr).toBe(0);
    expect(rewrap.stdout).toBe('re-wrap done: scanned 5, re-wrapped 5, changed concurrently 0\n');
    expect(rewrap.stderr).toContain('re-wrap [');
    const status = await cli(['keys', 'status']);
    expect(status.stdout).toContain('bk:ops:2  active');
    expect(status.stdout).toMatch(/bk:ops:1 {2}ready .* secret versions 0/);
    const json = JSON.parse((await cli(['--json', 'keys', 'status'])).stdout);
    expect(json.folders[0].versions[1]).toMatchObject({ id: 'bk:ops:2', secretVersions: 5 });
    const retire = await cli(['keys', 'retire', 'bk:ops:1']);
    expect(retire.stdout).toMatch(/^bk:ops:1 retired; its wrapped material is destroyed after 20/);
    const again = await cli(['keys', 'retire', 'bk:ops:2']);
    expect(again.code).toBe(6);
    for (let i = 0; i < 5; i++) expect((await cli(['get', `ops/s${i}`])).stdout).toBe(`v${i}`);
    expect((await cli(['keys', 'flush'])).stdout).toMatch(/^flush 1 requested/);
  });
});
