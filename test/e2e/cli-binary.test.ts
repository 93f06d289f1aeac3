import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BYTE_CASES } from '../support/bytes.js';
import { createHarness, type Harness } from '../support/harness.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const COFFER = join(ROOT, 'bin/coffer.js');

let h: Harness;
let server: ServerType;
let work: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  h = await createHarness({ label: 'clibin' });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  work = await mkdtemp(join(tmpdir(), 'coffer-bin-'));
  env = {
    PATH: process.env.PATH,
    HOME: work,
    COFFER_DATA_DIR: work,
    COFFER_ADDR: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    COFFER_TOKEN: h.token,
    COFFER_LOGIN_CACHE: '/nonexistent',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(work, { recursive: true, force: true });
});

/** Runs a command line in `sh`, as a user would; stdout is kept as bytes. */
async function sh(
  script: string,
  stdin?: Buffer,
): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  const child = spawn('sh', ['-c', script], {
    cwd: work,
    env: { ...env, COFFER: `${process.execPath} ${COFFER}` },
  });
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdin.end(stdin ?? Buffer.alloc(0));
  const guard = setTimeout(() => child.kill('SIGKILL'), 90_000);
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(guard);
  return { code, stdout: Buffer.concat(out), stderr };
}

describe('the coffer process with binary values', () => {
  it("when printf '\\xff\\xfe\\x80ok' is piped into coffer put bin/raw -, coffer get writes those 5 bytes back", async () => {
    // POSIX printf takes octal escapes: \377\376\200 are the bytes ff fe 80.
    const put = await sh(`printf '\\377\\376\\200ok' | $COFFER put bin/raw -`);
    expect(put.code, put.stderr).toBe(0);
    const got = await sh('$COFFER get bin/raw');
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout.equals(Buffer.from([0xff, 0xfe, 0x80, 0x6f, 0x6b]))).toBe(true);
    expect((await h.call('GET', '/v1/secrets/bin/raw')).body).toMatchObject({
      type: 'binary',
      valueBase64: '//6Ab2s=',
    });
  });

  it('when every byte value (and 64 KiB) goes through put and get, the bytes come back exactly', async () => {
    for (const [name, make] of BYTE_CASES.filter(([n]) => n === 'every byte value' || n === '64 KiB')) {
      const bytes = make();
      const put = await sh('$COFFER put bin/all -', bytes);
      expect(put.code, `${name}: ${put.stderr}`).toBe(0);
      const got = await sh('$COFFER get bin/all > out.bin && cat out.bin');
      expect(got.code, got.stderr).toBe(0);
      expect(got.stdout.equals(bytes), name).toBe(true);
    }
  });
});
