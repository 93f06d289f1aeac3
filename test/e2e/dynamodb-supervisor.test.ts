import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../lib/cli/main.js';
import { localSettings } from '../../lib/config.js';
import { lockDataDir } from '../../lib/local/lock.js';
import { type LocalServer, startLocalServer } from '../../lib/local/server.js';
import { type Logger, silentLogger } from '../../lib/log.js';
import { checkHistory, type Op, readFinal } from '../support/history.js';

interface Line {
  level: string;
  message: string;
  fields: Record<string, unknown>;
}

const lines: Line[] = [];
const logger: Logger = {
  info: (message, fields = {}) => lines.push({ level: 'info', message, fields }),
  warn: (message, fields = {}) => lines.push({ level: 'warn', message, fields }),
  error: (message, fields = {}) => lines.push({ level: 'error', message, fields }),
};

let server: LocalServer | undefined;
let dataDir = '';
afterAll(async () => {
  await server?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

// Java may take a minute or more to start on a loaded machine (the tests share it with others).
async function cli(args: string[], dir: string) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    env: { COFFER_DATA_DIR: dir },
    stdin: Object.assign(Readable.from([]), { isTTY: false }),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    cwd: dir,
  });
  return { code, stdout, stderr };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 150_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(lines.map((l) => l.message))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the local server supervises its DynamoDB Local', () => {
  it('when Java is killed right after a write was acknowledged, the write is there after the restart', async () => {
    // DynamoDB Local answers a transaction before SQLite commits it; without the commit barrier
    // (lib/store/dynamo-client.ts) most of these rounds lost their last write.
    const dir = await mkdtemp(join(tmpdir(), 'coffer-supervisor-ack-'));
    const own = await startLocalServer(
      { ...localSettings({ COFFER_DATA_DIR: dir }), port: 0 },
      silentLogger,
      undefined,
      {
        restarts: { maxRestarts: 20, windowMs: 600_000, backoffMs: 100 },
      },
    );
    try {
      const token = (await readFile(own.tokenFile, 'utf8')).trim();
      const call = (method: string, path: string, body?: unknown) =>
        fetch(`${own.url}${path}`, {
          method,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
      const lost: string[] = [];
      let acked = 0;
      for (let round = 0; round < 4; round++) {
        const latest = await until('the restarted engine', async () => {
          const res = await call('GET', '/v1/secrets/ack/w');
          if (res.status === 404) return 0;
          return res.status === 200 ? ((await res.json()) as { version: number }).version : undefined;
        });
        if (latest < acked) lost.push(`round ${round}: v${acked} acknowledged, v${latest} after the restart`);
        const res = await call('PUT', '/v1/secrets/ack/w', { value: `r-${round}` });
        expect(res.status).toBe(200);
        acked = ((await res.json()) as { version: number }).version;
        const pid = own.dynamodbPid() as number;
        process.kill(pid, 'SIGKILL');
        await until('the kill', async () => (own.dynamodbPid() !== pid ? true : undefined));
      }
      const final = await until('the last restart', async () => {
        const res = await call('GET', '/v1/secrets/ack/w');
        return res.status === 200 ? ((await res.json()) as { version: number }).version : undefined;
      });
      if (final < acked) lost.push(`last: v${acked} acknowledged, v${final} after the restart`);
      expect(lost).toEqual([]);
    } finally {
      await own.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }, 400_000);

  it('when Java is killed, it logs one line, restarts it on the same data, and stops non-zero past the bound', async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'coffer-supervisor-'));
    server = await startLocalServer(
      { ...localSettings({ COFFER_DATA_DIR: dataDir }), port: 0 },
      logger,
      undefined,
      {
        // Long enough that the ten requests below all fall in the outage: a quick-start JVM is
        // back about a second after the restart begins.
        restarts: { maxRestarts: 1, windowMs: 120_000, backoffMs: 5_000 },
      },
    );
    const running = server;
    const token = (await readFile(running.tokenFile, 'utf8')).trim();
    const call = (method: string, path: string, body?: unknown) =>
      fetch(`${running.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    expect((await call('PUT', '/v1/secrets/sup/a', { value: 'kept' })).status).toBe(200);

    // A write load runs through the kill and the restart.
    const history: Op[] = [];
    let writing = true;
    const writer = (async () => {
      for (let n = 0; writing; n++) {
        const op: Op = {
          client: 0,
          key: 'sup/w',
          kind: 'put',
          value: `w-${n}`,
          invokedAt: performance.now(),
          completedAt: Number.NaN,
          status: 0,
        };
        history.push(op);
        try {
          const res = await call('PUT', '/v1/secrets/sup/w', { value: op.value });
          op.status = res.status;
          const body = (await res.json()) as { version?: number };
          if (res.status === 200) op.version = body.version as number;
        } catch {
          op.status = 0;
        }
        op.completedAt = performance.now();
        // Paced while the engine is down, so that the load does not spin on fast 503s.
        if (op.status !== 200) await new Promise((r) => setTimeout(r, 200));
      }
    })();
    await until('a few writes', async () => (history.length >= 3 ? true : undefined));

    const firstPid = running.dynamodbPid();
    expect(firstPid).toBeTypeOf('number');
    process.kill(firstPid as number, 'SIGKILL');
    await until('the exit line', async () =>
      lines.some((l) => l.message.startsWith('DynamoDB Local exited')) ? true : undefined,
    );

    // While Java is down, requests fail fast with 503, and the log does not grow by request.
    const before = lines.length;
    for (let i = 0; i < 10; i++) {
      const started = Date.now();
      const res = await call('GET', '/v1/secrets/sup/a');
      expect(res.status).toBe(503);
      expect(((await res.json()) as { error: { code: string } }).error.code).toMatch(/_unavailable$/);
      expect(Date.now() - started).toBeLessThan(5_000);
    }
    const during = lines.slice(before);
    expect(during.length).toBeLessThanOrEqual(3);
    for (const l of during) expect(l.fields).not.toHaveProperty('stack');
    expect(lines.filter((l) => l.message.startsWith('DynamoDB Local exited'))).toHaveLength(1);
    expect(lines.find((l) => l.message.startsWith('DynamoDB Local exited'))?.fields).toMatchObject({
      pid: firstPid,
      signal: 'SIGKILL',
      restart: 1,
    });

    // Restarted on the same data directory: the secret written before is there.
    const value = await until('the restarted engine', async () => {
      const res = await call('GET', '/v1/secrets/sup/a');
      return res.status === 200 ? ((await res.json()) as { value: string }).value : undefined;
    });
    expect(value).toBe('kept');
    expect(running.dynamodbPid()).not.toBe(firstPid);
    expect((await call('PUT', '/v1/secrets/sup/a', { value: 'after' })).status).toBe(200);

    // Every write acknowledged before, during or after the restart is there, once.
    const acked = history.length;
    await until('writes after the restart', async () =>
      history.slice(acked).filter((o) => o.status === 200).length >= 2 ? true : undefined,
    );
    writing = false;
    await writer;
    expect(history.some((o) => o.status === 503)).toBe(true);
    const json = async (method: string, route: string) => {
      const res = await call(method, route);
      return { status: res.status, body: (await res.json()) as unknown };
    };
    expect(checkHistory(history, new Map([['sup/w', await readFinal(json, 'sup/w')]]))).toEqual([]);
    const verify = await cli(['audit', 'verify'], dataDir);
    expect(verify.stderr).toBe('');
    expect(verify.code).toBe(0);

    // Past the bound (one restart in the window here) the server gives up.
    process.kill(running.dynamodbPid() as number, 'SIGKILL');
    const failure = await Promise.race([
      running.failed,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000)),
    ]);
    expect(failure?.name).toBe('DynamoDbLocalFailedError');
    expect(lines.some((l) => l.message === 'DynamoDB Local keeps exiting; stopping the server')).toBe(true);
    await running.stop();
    server = undefined;
    // The lock is released: another server could start on this data dir.
    lockDataDir(dataDir).release();
  }, 400_000);
});
