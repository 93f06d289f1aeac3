import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '../../lib/cli/main.js';
import { createHarness, type Harness } from '../support/harness.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CANARY = `run-canary-${Math.random().toString(36).slice(2)}-e7`;

let h: Harness;
let server: ServerType;
let endpoint: string;
let work: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  h = await createHarness({ label: 'clirun' });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  work = await mkdtemp(join(tmpdir(), 'coffer-run-'));
  for (const d of ['home', 'tmp', 'data', 'cwd']) await mkdir(join(work, d));
  env = {
    PATH: process.env.PATH,
    HOME: join(work, 'home'),
    TMPDIR: join(work, 'tmp'),
    COFFER_DATA_DIR: join(work, 'data'),
    COFFER_ADDR: endpoint,
    COFFER_TOKEN: h.token,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  };
  for (const [path, value] of [
    ['run/app/db/password', CANARY],
    ['run/app/api-key', 'key-123'],
    ['run/app/cfg.json', '{"a":1}'],
    ['run/other/x', 'other-x'],
    ['run/clash/a-b', '1'],
    ['run/clash/a.b', '2'],
  ]) {
    expect((await h.call('PUT', `/v1/secrets/${path}`, { body: { value } })).status).toBe(200);
  }
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(work, { recursive: true, force: true });
});

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI as its own process, through its installed entry point (bin/coffer.js). */
function coffer(
  args: string[],
  onStart?: (child: ChildProcess, stdout: () => string) => void,
): Promise<Result> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/coffer.js'), ...args], {
    cwd: join(work, 'cwd'),
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  onStart?.(child, () => stdout);
  // A bound, not a speed target: each process starts Node and loads the built CLI, slow on a busy machine.
  const guard = setTimeout(() => child.kill('SIGKILL'), 90_000);
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Every regular file below `dir`. */
async function filesBelow(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out;
}

function memoryIo(extra: NodeJS.ProcessEnv = {}) {
  const o = { stdout: '', stderr: '' };
  const io: CliIo = {
    env: { ...env, ...extra },
    cwd: join(work, 'cwd'),
    stdin: Readable.from([]),
    stdout: { write: (s: string) => (o.stdout += s) },
    stderr: { write: (s: string) => (o.stderr += s) },
  };
  return { io, o };
}

// Several tests start the CLI as processes, one after another.
describe('coffer run', { timeout: 180_000 }, () => {
  it('when a child prints a planted canary, it reaches the child while no file written by the CLI holds it', async () => {
    const r = await coffer([
      'run',
      '--prefix',
      'run/app',
      '--',
      'node',
      '-e',
      'process.stdout.write(process.env.DB_PASSWORD)',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(CANARY);
    const files = [...(await filesBelow(work)), ...(await filesBelow(h.dataDir))];
    for (const file of files) {
      const content = await readFile(file);
      expect(content.includes(CANARY), `canary found in ${file}`).toBe(false);
    }
  });

  it('when secrets come from a prefix and --map, the names follow the rules and COFFER_TOKEN is not passed', async () => {
    const script =
      'const e = process.env; console.log(JSON.stringify([e.API_KEY, e.CFG_JSON, e.DB_PASSWORD === undefined, e.OTHER, e.COFFER_TOKEN]))';
    const { io, o } = memoryIo();
    const code = await runCli(
      ['run', '--prefix', 'run/app/', '--map', 'OTHER=run/other/x', '--', 'node', '-e', script],
      io,
    );
    expect(o.stderr).toBe('');
    expect(code).toBe(0);
    expect(JSON.parse(o.stdout)).toEqual(['key-123', '{"a":1}', false, 'other-x', null]);
  });

  it('when two secrets map to one variable name, it fails naming both and runs nothing', async () => {
    const { io, o } = memoryIo();
    const code = await runCli(['run', '--prefix', 'run/clash', '--', 'node', '-e', 'console.log("ran")'], io);
    expect(code).toBe(2);
    expect(o.stderr).toContain('A_B');
    expect(o.stderr).toContain('run/clash/a-b');
    expect(o.stderr).toContain('run/clash/a.b');
    expect(o.stdout).not.toContain('ran');
    const mapped = memoryIo();
    expect(
      await runCli(['run', '--prefix', 'run/other', '--map', 'X=run/app/api-key', '--', 'true'], mapped.io),
    ).toBe(2);
  });

  it('when the command has options but no -- before it, it refuses with a usage error that shows the -- form', async () => {
    const { io, o } = memoryIo();
    const code = await runCli(['run', '--prefix', 'run/app', 'node', '-e', 'console.log("ran")'], io);
    expect(code).toBe(2);
    expect(o.stderr).toContain("unknown option '-e'");
    expect(o.stderr).toContain('Put the command after --');
    expect(o.stdout).toBe('');
    const nothing = memoryIo();
    expect(await runCli(['run', '--prefix', 'run/app', '--'], nothing.io)).toBe(2);
    expect(nothing.o.stderr).toContain("missing required argument 'command'");
    // A command without options of its own needs no --.
    const plain = memoryIo();
    expect(await runCli(['run', '--map', 'K=run/app/api-key', 'true'], plain.io)).toBe(0);
  });

  it('when a mapped secret is missing, it fails with exit 3 before starting the command', async () => {
    const { io, o } = memoryIo();
    const code = await runCli(['run', '--map', 'X=run/none', '--', 'node', '-e', 'console.log("ran")'], io);
    expect(code).toBe(3);
    expect(o.stderr).toContain('run/none');
    expect(o.stdout).toBe('');
  });

  it('when the child exits 0 or 3, or is not found, that is the exit code', async () => {
    expect(
      (await coffer(['run', '--map', 'K=run/app/api-key', '--', 'node', '-e', 'process.exit(0)'])).code,
    ).toBe(0);
    expect(
      (await coffer(['run', '--map', 'K=run/app/api-key', '--', 'node', '-e', 'process.exit(3)'])).code,
    ).toBe(3);
    const { io } = memoryIo();
    expect(await runCli(['run', '--', 'definitely-not-a-command-xyz'], io)).toBe(127);
  });

  it('when a signal kills the child, coffer dies of the same signal', async () => {
    const r = await coffer(['run', '--', 'node', '-e', 'process.kill(process.pid, "SIGTERM")']);
    expect(r.signal).toBe('SIGTERM');
    const { io } = memoryIo();
    // In-process (no process of its own to re-raise in) it reports 128 + n, as shells do.
    expect(await runCli(['run', '--', 'node', '-e', 'process.kill(process.pid, "SIGKILL")'], io)).toBe(137);
  });

  it('when coffer receives SIGTERM, it passes it to the child, and the child decides the exit code', async () => {
    const script =
      'process.on("SIGTERM", () => { console.log("got SIGTERM"); process.exit(7) }); console.log("ready"); setInterval(() => {}, 1000)';
    const r = await coffer(['run', '--', 'node', '-e', script], (child, stdout) => {
      const poll = setInterval(() => {
        if (stdout().includes('ready')) {
          clearInterval(poll);
          child.kill('SIGTERM');
        }
      }, 50);
    });
    expect(r.stdout).toContain('got SIGTERM');
    expect(r.code).toBe(7);
  });
});
