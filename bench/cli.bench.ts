/**
 * How long the installed CLI (bin/coffer.js, running the build in dist/) takes to start, against
 * the cost of starting Node at all (`node -e 0`), in one run on one machine: `coffer --version`
 * (target ≤ 2× the baseline) and `coffer get` from a running local server (target ≤ 3.5×).
 * The three commands run in turns, so that a busy moment of the machine slows all of them alike.
 *
 *   npm run build && npm run bench -- cli
 *   BENCH_RUNS=40 npx tsx bench/cli.bench.ts
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../lib/local/dynamodb-local.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'coffer.js');
const RUNS = Number(process.env.BENCH_RUNS ?? 20);
const SECRET = 'bench/cli/value';

export interface Row {
  command: string;
  medianMs: number;
  p90Ms: number;
  ratio: number;
  target?: number;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
}

/** Wall time of one process from spawn to exit; it must succeed. */
function time(args: readonly string[], env: NodeJS.ProcessEnv): number {
  const started = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.status !== 0)
    throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr.toString().slice(0, 500)}`);
  return ms;
}

async function startServer(env: NodeJS.ProcessEnv, addr: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, 'server', '--dev'], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let output = '';
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the local server exited: ${output.slice(-500)}`);
    if (Date.now() > deadline) throw new Error('the local server did not start within 180 s');
    try {
      if ((await fetch(`${addr}/v1/health`)).ok) return child;
    } catch {}
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function run(): Promise<Row[]> {
  if (!existsSync(join(ROOT, 'dist', 'bin', 'coffer.js')))
    throw new Error('no build: run `npm run build` first');
  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-cli-bench-'));
  const port = await freePort();
  const addr = `http://127.0.0.1:${port}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    COFFER_PORT: String(port),
    COFFER_ADDR: addr,
    COFFER_DATA_DIR: dataDir,
  };
  delete env.COFFER_TOKEN;
  const server = await startServer(env, addr);
  try {
    time([BIN, 'put', SECRET, 'bench-value'], env);
    const commands: { command: string; args: string[]; target?: number }[] = [
      { command: 'node -e 0', args: ['-e', '0'] },
      { command: 'coffer --version', args: [BIN, '--version'], target: 2 },
      { command: 'coffer get (local server)', args: [BIN, 'get', SECRET], target: 3.5 },
    ];
    // Warm the file cache and the server's data-key cache before anything is counted.
    for (const c of commands) time(c.args, env);
    const samples = commands.map(() => [] as number[]);
    for (let i = 0; i < RUNS; i++) {
      commands.forEach((c, j) => {
        samples[j]?.push(time(c.args, env));
      });
    }
    const medians = samples.map((s) =>
      quantile(
        [...s].sort((a, b) => a - b),
        0.5,
      ),
    );
    const baseline = medians[0] ?? Number.NaN;
    return commands.map((c, j) => {
      const sorted = [...(samples[j] ?? [])].sort((a, b) => a - b);
      const median = medians[j] ?? Number.NaN;
      return {
        command: c.command,
        medianMs: Math.round(median * 10) / 10,
        p90Ms: Math.round(quantile(sorted, 0.9) * 10) / 10,
        ratio: Math.round((median / baseline) * 100) / 100,
        ...(c.target === undefined ? {} : { target: c.target }),
      };
    });
  } finally {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
    await rm(dataDir, { recursive: true, force: true });
  }
}

export function markdown(rows: readonly Row[]): string {
  return [
    `${RUNS} runs each, in turns; ratio = median / median of \`node -e 0\`.`,
    '',
    '| command | median ms | p90 ms | ratio | target | |',
    '|---|---:|---:|---:|---:|---|',
    ...rows.map(
      (r) =>
        `| \`${r.command}\` | ${r.medianMs} | ${r.p90Ms} | ${r.ratio}× | ${r.target === undefined ? '' : `≤ ${r.target}×`} | ${
          r.target === undefined ? '' : r.ratio <= r.target ? 'met' : 'missed'
        } |`,
    ),
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.stdout.write(`${markdown(await run())}\n`);
}
