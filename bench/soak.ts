/**
 * `npm run soak`: the local server under sustained load, then the randomized tests with more cases.
 *
 *   npm run soak                                  3 minutes, GETs at concurrency 8, PUTs at 1
 *   COFFER_SOAK_MINUTES=10 npm run soak
 *   COFFER_SOAK_GET_CONCURRENCY=16 COFFER_SOAK_PUT_CONCURRENCY=2 npm run soak
 *   COFFER_SOAK_TESTS=0 npm run soak              load only
 *
 * The server runs as `coffer server --dev` in a child process, on the node running this script
 * (the npm script starts it on Node 22 through tools/test-node), with its own data dir and port.
 * It reports whether the server survived (still answering, exit status 0 on SIGTERM), throughput,
 * latency and every non-200 answer by status; then it runs the property-based, fault and history
 * tests with COFFER_PROPERTY_RUNS and COFFER_HISTORY_OPS raised. Exit status 0 only if all held.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const minutes = Number(env.COFFER_SOAK_MINUTES ?? 3);
const getConcurrency = Number(env.COFFER_SOAK_GET_CONCURRENCY ?? 8);
const putConcurrency = Number(env.COFFER_SOAK_PUT_CONCURRENCY ?? 1);
const runTests = env.COFFER_SOAK_TESTS !== '0';
const propertyRuns = env.COFFER_PROPERTY_RUNS ?? '1000';
const historyOps = env.COFFER_HISTORY_OPS ?? '100';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

interface Tally {
  ok: number;
  failures: Map<string, number>;
  latencies: number[];
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

async function startServer(dataDir: string, port: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'bin/coffer.ts'), 'server', '--dev'], {
    cwd: root,
    env: { ...env, COFFER_DATA_DIR: dataDir, COFFER_PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const log = { errors: 0, lines: 0, last: [] as string[] };
  let listening: (() => void) | undefined;
  const ready = new Promise<void>((resolve) => {
    listening = resolve;
  });
  let buffered = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    let nl = buffered.indexOf('\n');
    while (nl >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      log.lines++;
      if (line.includes('"level":"error"')) log.errors++;
      log.last = [...log.last.slice(-4), line.slice(0, 300)];
      if (line.startsWith('Coffer listening on')) listening?.();
      nl = buffered.indexOf('\n');
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const started = await Promise.race([ready.then(() => true), exited.then(() => false)]);
  if (!started) throw new Error(`the server did not start: ${log.last.join(' | ')}`);
  return { child, log, exited };
}

async function load(url: string, token: string, child: ChildProcess, deadline: number) {
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const tallies = { get: fresh(), put: fresh() };
  function fresh(): Tally {
    return { ok: 0, failures: new Map(), latencies: [] };
  }
  const record = (t: Tally, status: string, ms: number) => {
    if (status === '200') t.ok++;
    else t.failures.set(status, (t.failures.get(status) ?? 0) + 1);
    t.latencies.push(ms);
  };
  const put = await fetch(`${url}/v1/secrets/soak/read`, {
    method: 'PUT',
    headers,
    body: JSON.stringify({ value: 'soak' }),
  });
  if (put.status !== 200) throw new Error(`setup PUT answered ${put.status}`);
  const worker = async (kind: 'get' | 'put', id: number) => {
    let n = 0;
    while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
      const started = performance.now();
      let status: string;
      try {
        const res =
          kind === 'get'
            ? await fetch(`${url}/v1/secrets/soak/read`, { headers })
            : await fetch(`${url}/v1/secrets/soak/w${id}`, {
                method: 'PUT',
                headers,
                body: JSON.stringify({ value: `v${n++}` }),
              });
        await res.arrayBuffer();
        status = String(res.status);
      } catch (err) {
        status = `network:${(err as { cause?: { code?: string } }).cause?.code ?? 'error'}`;
      }
      record(tallies[kind], status, performance.now() - started);
    }
  };
  const startedAt = Date.now();
  await Promise.all([
    ...Array.from({ length: getConcurrency }, (_, i) => worker('get', i)),
    ...Array.from({ length: putConcurrency }, (_, i) => worker('put', i)),
  ]);
  return { tallies, seconds: (Date.now() - startedAt) / 1000 };
}

function vitest(files: readonly string[]): Promise<number> {
  const require = createRequire(import.meta.url);
  const manifest = require.resolve('vitest/package.json');
  const bin = join(dirname(manifest), 'vitest.mjs');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, '--run', ...files], {
      cwd: root,
      stdio: 'inherit',
      env: {
        ...env,
        COFFER_PROPERTY_RUNS: propertyRuns,
        COFFER_PROPERTY_SEED: env.COFFER_PROPERTY_SEED ?? 'random',
        COFFER_HISTORY_OPS: historyOps,
      },
    });
    child.once('exit', (code) => resolve(code ?? 1));
  });
}

async function main(): Promise<number> {
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-soak-'));
  const port = await freePort();
  process.stderr.write(
    `soak: Node.js ${process.version}, ${minutes} min, GET x${getConcurrency}, PUT x${putConcurrency}\n`,
  );
  const server = await startServer(dataDir, port);
  const token = (await readFile(join(dataDir, 'dev-token'), 'utf8')).trim();
  const url = `http://127.0.0.1:${port}`;
  const { tallies, seconds } = await load(url, token, server.child, Date.now() + minutes * 60_000);
  const alive = server.child.exitCode === null && server.child.signalCode === null;
  const health = alive ? (await fetch(`${url}/v1/health`).catch(() => undefined))?.status : undefined;
  server.child.kill('SIGTERM');
  const exit = await server.exited;
  await rm(dataDir, { recursive: true, force: true });

  const rows = (['get', 'put'] as const).map((kind) => {
    const t = tallies[kind];
    const sorted = [...t.latencies].sort((a, b) => a - b);
    return {
      kind: kind.toUpperCase(),
      requests: t.latencies.length,
      ok: t.ok,
      perSecond: Math.round(t.latencies.length / seconds),
      p50: percentile(sorted, 50).toFixed(1),
      p99: percentile(sorted, 99).toFixed(1),
      failures: [...t.failures].map(([s, n]) => `${s}×${n}`).join(', ') || 'none',
    };
  });
  const survived = alive && health === 200 && exit.code === 0;
  const lines = [
    `Soak on Node.js ${process.version}: ${seconds.toFixed(0)} s, GET at concurrency ${getConcurrency}, PUT at ${putConcurrency}.`,
    `Server survived: ${survived ? 'yes' : 'NO'} (answering at the end: ${health ?? 'no'}, exit on SIGTERM: ${exit.signal ?? exit.code}); error lines in its log: ${server.log.errors}.`,
    '',
    '| op | requests | 200 | per second | p50 ms | p99 ms | other answers |',
    '|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) => `| ${r.kind} | ${r.requests} | ${r.ok} | ${r.perSecond} | ${r.p50} | ${r.p99} | ${r.failures} |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (!survived) process.stderr.write(`last server lines:\n${server.log.last.join('\n')}\n`);

  let testsOk = true;
  if (runTests) {
    const files = [
      'test/integration/http-properties.test.ts',
      'test/integration/faults.test.ts',
      'test/integration/history.test.ts',
    ].filter((f) => existsSync(join(root, f)));
    process.stderr.write(
      `soak: ${files.join(', ')} with COFFER_PROPERTY_RUNS=${propertyRuns} COFFER_HISTORY_OPS=${historyOps}\n`,
    );
    const code = await vitest(files);
    testsOk = code === 0;
    process.stdout.write(
      `Randomized tests (${files.length} files): ${testsOk ? 'passed' : `FAILED (exit ${code})`}.\n`,
    );
  }
  return survived && testsOk && rows.every((r) => r.requests > 0) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`soak failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
