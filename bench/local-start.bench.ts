/**
 * `npm start` to healthy: how long `coffer server --dev` takes from spawn until `GET /v1/health`
 * answers 200, on a fresh data dir (the first start: keys, tables, dev token) and then on the same,
 * warm data dir (what a developer sees every day).
 *
 *   npm run bench -- local-start
 *   BENCH_STARTS=5 npm run bench -- local-start
 *
 * Each start is the CLI as `npm start` runs it (`node bin/coffer.js server --dev`, the build in
 * dist/: run `npm run build` first) in a fresh process on the Node running this benchmark; it is stopped with SIGINT, like Ctrl-C, and
 * the next start waits until the previous one has exited (and so released its data dir).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort } from '../lib/local/dynamodb-local.js';

export interface StartRow {
  readonly start: string;
  readonly dataDir: 'fresh' | 'warm';
  readonly msToHealthy: number;
}

const REPO = fileURLToPath(new URL('..', import.meta.url));

async function healthyAfter(child: ChildProcess, url: string, began: number): Promise<number> {
  const deadline = began + 120_000;
  while (performance.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the server exited with ${child.exitCode}`);
    try {
      const res = await fetch(`${url}/v1/health`);
      if (res.status === 200) return performance.now() - began;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('the server was not healthy within 120 s');
}

/** One start to healthy, then a clean stop. */
async function startOnce(dataDir: string): Promise<number> {
  const port = await freePort();
  const began = performance.now();
  const child = spawn(process.execPath, [join(REPO, 'bin/coffer.js'), 'server', '--dev'], {
    cwd: REPO,
    env: { ...process.env, COFFER_DATA_DIR: dataDir, COFFER_PORT: String(port) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    if (stderr.length < 8192) stderr += c.toString();
  });
  try {
    return await healthyAfter(child, `http://127.0.0.1:${port}`, began);
  } catch (err) {
    throw new Error(`${(err as Error).message}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  } finally {
    await new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGINT');
    });
  }
}

export async function run(): Promise<StartRow[]> {
  const starts = Number(process.env.BENCH_STARTS ?? 3);
  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-bench-start-'));
  try {
    const rows: StartRow[] = [
      { start: 'first', dataDir: 'fresh', msToHealthy: Math.round(await startOnce(dataDir)) },
    ];
    for (let i = 1; i <= starts; i++) {
      rows.push({ start: `warm ${i}`, dataDir: 'warm', msToHealthy: Math.round(await startOnce(dataDir)) });
    }
    const warm = rows.filter((r) => r.dataDir === 'warm').map((r) => r.msToHealthy);
    const sorted = [...warm].sort((a, b) => a - b);
    rows.push({
      start: 'warm median',
      dataDir: 'warm',
      msToHealthy: sorted[Math.floor((sorted.length - 1) / 2)] ?? 0,
    });
    return rows;
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rows = await run();
  for (const r of rows) process.stdout.write(`${r.start}\t${r.dataDir}\t${r.msToHealthy} ms\n`);
}
