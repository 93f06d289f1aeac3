import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, stat, symlink } from 'node:fs/promises';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../lib/cli/main.js';
import { freePort } from '../../lib/local/dynamodb-local.js';

const ROOT = join(import.meta.dirname, '../..');

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startServer(env: Record<string, string>): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bin/coffer.ts'), 'server', '--dev'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function waitFor(run: Running, text: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!run.output().includes(text)) {
    if (run.child.exitCode !== null) throw new Error(`server exited: ${run.output()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for "${text}": ${run.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The DynamoDB Local (java) processes started by the server. */
function javaChildren(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)])
      .toString()
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number)
      .filter((c) => readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('DynamoDBLocal'));
  } catch {
    return [];
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function cli(args: string[], env: Record<string, string>, stdin = '') {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    env: { ...env },
    stdin: Object.assign(Readable.from([Buffer.from(stdin)]), { isTTY: false }),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    cwd: ROOT,
  });
  return { code, stdout, stderr };
}

const running: Running[] = [];
afterAll(() => {
  for (const r of running) if (r.child.exitCode === null) r.child.kill('SIGKILL');
});

describe('local server (npm start)', () => {
  it('starts DynamoDB Local and the API on 127.0.0.1, keeps secrets across restarts and stops cleanly', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-e2e-'));
    const port = await freePort();
    const env = { COFFER_DATA_DIR: dataDir, COFFER_PORT: String(port) };
    const canary = `CANARY-${crypto.randomUUID()}`;

    const first = startServer(env);
    running.push(first);
    await waitFor(first, 'Coffer listening on');
    expect(first.output()).toContain(`http://127.0.0.1:${port}`);
    expect(first.output()).toContain(join(dataDir, 'dev-token'));
    expect(first.output()).toContain('Token issuers: dev (urn:coffer:dev)\n');

    for (const file of ['dev-token', 'keys/root-0001.key', 'keys/dev-issuer.pem']) {
      expect(((await stat(join(dataDir, file))).mode & 0o777).toString(8), file).toBe('600');
    }

    const cliEnv = { COFFER_ADDR: `http://127.0.0.1:${port}`, COFFER_DATA_DIR: dataDir };
    const put = await cli(['put', 'e2e/db/password', '-'], cliEnv, canary);
    expect(put.code, put.stderr).toBe(0);
    expect(put.stdout).toContain('version 1');
    const got = await cli(['get', 'e2e/db/password'], cliEnv);
    expect(got.stdout).toBe(canary);
    const ls = await cli(['--json', 'ls', 'e2e/', '-r'], cliEnv);
    expect(JSON.parse(ls.stdout).items.map((i: { path: string }) => i.path)).toEqual(['e2e/db/password']);

    // Loopback only: the port is closed on every other interface.
    const external = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !i.internal);
    if (external) {
      const refused = await fetch(`http://${external.address}:${port}/v1/health`).then(
        () => false,
        () => true,
      );
      expect(refused).toBe(true);
    }

    const pid = first.child.pid as number;
    const children = javaChildren(pid);
    expect(children).toHaveLength(1);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    await new Promise((r) => setTimeout(r, 200));
    for (const c of children) expect(alive(c), `child ${c} still running`).toBe(false);
    expect(first.output()).not.toContain(canary);

    // A token minted now keeps working after a restart on another port: the dev issuer's iss is
    // urn:coffer:dev, not a URL with the port in it.
    const minted = await cli(['token', '--sub', 'carol', '--groups', 'admins'], cliEnv);
    expect(minted.code, minted.stderr).toBe(0);
    const otherPort = await freePort();
    const second = startServer({ ...env, COFFER_PORT: String(otherPort) });
    running.push(second);
    await waitFor(second, 'Coffer listening on');
    const secondEnv = { COFFER_ADDR: `http://127.0.0.1:${otherPort}`, COFFER_DATA_DIR: dataDir };
    const again = await cli(['get', 'e2e/db/password'], secondEnv);
    expect(again.stdout).toBe(canary);
    const who = await cli(['--json', 'whoami'], { ...secondEnv, COFFER_TOKEN: minted.stdout.trim() });
    expect(who.code, who.stderr).toBe(0);
    expect(JSON.parse(who.stdout)).toEqual({
      type: 'User',
      id: 'dev:carol',
      entity: 'Coffer::User::"dev:carol"',
      groups: ['admins'],
      attributes: {},
      authMethod: 'dev',
      issuer: 'dev',
    });
    const secondChildren = javaChildren(second.child.pid as number);
    second.child.kill('SIGINT');
    expect(await second.exited).toBe(0);
    await new Promise((r) => setTimeout(r, 200));
    for (const c of secondChildren) expect(alive(c)).toBe(false);
    expect(second.output()).not.toContain(canary);
    expect(await readFile(join(dataDir, 'dev-token'), 'utf8')).not.toContain(canary);
  }, 120_000); // two starts of DynamoDB Local (a JVM) on a shared machine

  it('when Java is missing, it prints one clear line and exits non-zero', async () => {
    const bin = await mkdtemp(join(tmpdir(), 'coffer-nojava-'));
    await mkdir(bin, { recursive: true });
    await symlink(process.execPath, join(bin, 'node'));
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-e2e-'));
    const run = startServer({ PATH: bin, COFFER_DATA_DIR: dataDir, COFFER_PORT: String(await freePort()) });
    running.push(run);
    const code = await run.exited;
    expect(code).not.toBe(0);
    const lines = run
      .output()
      .trim()
      .split('\n')
      .filter((l) => l.trim() !== '');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/Java/);
    expect(lines[0]).not.toMatch(/\bat .+:\d+/);
  });
});
