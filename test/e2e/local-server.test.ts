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
/** Each test starts Java and node processes: generous on a loaded machine. */
const E2E_TIMEOUT_MS = 240_000;

interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/**
 * The server as `npm start` runs it: the built CLI. `ownGroup`: in a process group of its own, like
 * a command in a terminal's foreground.
 */
function startServer(env: Record<string, string>, ownGroup = false): Running {
  const child = spawn(process.execPath, [join(ROOT, 'bin/coffer.js'), 'server', '--dev'], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: ownGroup,
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

async function waitFor(run: Running, text: string, ms = 180_000): Promise<void> {
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

describe('local server (npm start)', { timeout: E2E_TIMEOUT_MS }, () => {
  it('starts DynamoDB Local and the API on 127.0.0.1, keeps secrets across restarts and stops cleanly', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-e2e-'));
    const port = await freePort();
    const env = { COFFER_DATA_DIR: dataDir, COFFER_PORT: String(port) };
    const canary = `CANARY-${crypto.randomUUID()}`;

    const first = startServer(env);
    running.push(first);
    // The banner's last line: its lines may come in more than one chunk.
    await waitFor(first, 'Try: ');
    expect(first.output()).toContain(`http://127.0.0.1:${port}`);
    expect(first.output()).toContain(join(dataDir, 'dev-token'));
    // The hint names what the CLI needs to find this server and its token.
    expect(first.output()).toContain(
      `COFFER_ADDR=http://127.0.0.1:${port} COFFER_DATA_DIR=${dataDir} npm run coffer -- put hello/world -`,
    );
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

  it('when a second server starts on the same data dir or port, it says so in one line and the first keeps serving', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-e2e-'));
    const port = await freePort();
    const first = startServer({ COFFER_DATA_DIR: dataDir, COFFER_PORT: String(port) });
    running.push(first);
    await waitFor(first, 'Coffer listening on');
    const cliEnv = { COFFER_ADDR: `http://127.0.0.1:${port}`, COFFER_DATA_DIR: dataDir };
    expect((await cli(['put', 'twice/x', 'one'], cliEnv)).code).toBe(0);

    const oneLine = async (run: Running) => {
      expect(await run.exited).not.toBe(0);
      const lines = run
        .output()
        .trim()
        .split('\n')
        .filter((l) => l.trim() !== '');
      expect(lines, run.output()).toHaveLength(1);
      expect(lines[0]).not.toMatch(/\bat .+:\d+/);
      return lines[0] as string;
    };
    // Same data dir, another port: refused before it touches the first server's DynamoDB Local.
    const sameDir = startServer({ COFFER_DATA_DIR: dataDir, COFFER_PORT: String(await freePort()) });
    running.push(sameDir);
    expect(await oneLine(sameDir)).toMatch(/another Coffer server \(pid \d+\) is using the data dir/);
    // Another data dir, the same port.
    const otherDir = await mkdtemp(join(tmpdir(), 'coffer-e2e-'));
    const samePort = startServer({ COFFER_DATA_DIR: otherDir, COFFER_PORT: String(port) });
    running.push(samePort);
    expect(await oneLine(samePort)).toMatch(new RegExp(`port ${port} on 127.0.0.1 is already in use`));

    const got = await cli(['get', 'twice/x'], cliEnv);
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toBe('one');

    // A server killed with SIGKILL leaves its lock and its DynamoDB Local: the next start takes both over.
    const orphans = javaChildren(first.child.pid as number);
    first.child.kill('SIGKILL');
    await first.exited;
    const next = startServer({ COFFER_DATA_DIR: dataDir, COFFER_PORT: String(port) });
    running.push(next);
    await waitFor(next, 'Coffer listening on');
    for (const c of orphans) expect(alive(c), `orphan ${c} still running`).toBe(false);
    expect((await cli(['get', 'twice/x'], cliEnv)).stdout).toBe('one');
    next.child.kill('SIGTERM');
    expect(await next.exited).toBe(0);
    await expect(stat(join(dataDir, 'server.lock'))).rejects.toThrow();
  });

  it('when SIGTERM or SIGINT comes while DynamoDB Local is still starting, nothing is left running', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const dataDir = await mkdtemp(join(tmpdir(), 'coffer-e2e-'));
      const run = startServer({ COFFER_DATA_DIR: dataDir, COFFER_PORT: String(await freePort()) });
      running.push(run);
      const pid = run.child.pid as number;
      let java: number[] = [];
      while (java.length === 0) {
        if (run.child.exitCode !== null) throw new Error(`server exited: ${run.output()}`);
        await new Promise((r) => setTimeout(r, 50));
        java = javaChildren(pid);
      }
      expect(run.output()).not.toContain('Coffer listening on');
      run.child.kill(signal);
      expect(await run.exited).toBe(0);
      await new Promise((r) => setTimeout(r, 500));
      for (const c of java) expect(alive(c), `${signal}: java ${c} still running`).toBe(false);
      await expect(stat(join(dataDir, 'server.lock'))).rejects.toThrow();
      expect(run.output()).not.toMatch(/\bat .+:\d+/);
    }
  });

  it('when Ctrl-C signals the whole process group, the server still seals its audit log before DynamoDB Local stops', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-e2e-'));
    const run = startServer({ COFFER_DATA_DIR: dataDir, COFFER_PORT: String(await freePort()) }, true);
    running.push(run);
    await waitFor(run, 'Coffer listening on');
    // The start's own checkpoint follows the listening line (it does not hold up the start).
    await waitFor(run, '"type":"checkpoint"');
    const pid = run.child.pid as number;
    const java = javaChildren(pid);
    expect(java).toHaveLength(1);
    const before = run.output().split('"type":"checkpoint"').length;
    // What a terminal does on Ctrl-C: SIGINT to every process of the foreground group.
    process.kill(-pid, 'SIGINT');
    expect(await run.exited).toBe(0);
    await new Promise((r) => setTimeout(r, 500));
    for (const c of java) expect(alive(c), `java ${c} still running`).toBe(false);
    expect(run.output()).not.toContain('audit checkpoint failed');
    // The shutdown checkpoint was written.
    expect(run.output().split('"type":"checkpoint"').length).toBe(before + 1);
  });

  it('when COFFER_DYNAMODB_ENDPOINT names nothing that answers, it says so in one line', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-e2e-'));
    const endpoint = `http://127.0.0.1:${await freePort()}`;
    const run = startServer({
      COFFER_DATA_DIR: dataDir,
      COFFER_PORT: String(await freePort()),
      COFFER_DYNAMODB_ENDPOINT: endpoint,
    });
    running.push(run);
    expect(await run.exited).toBe(1);
    const lines = run
      .output()
      .trim()
      .split('\n')
      .filter((l) => l.trim() !== '');
    expect(lines).toEqual([
      `coffer: cannot use DynamoDB at ${endpoint} (COFFER_DYNAMODB_ENDPOINT): ECONNREFUSED; is it running? (config_error)`,
    ]);
    await expect(stat(join(dataDir, 'server.lock'))).rejects.toThrow();
  });

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
