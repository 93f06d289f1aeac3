/**
 * Coffer over HTTP against its storage floor, in one run on one DynamoDB Local:
 *
 *   npm run bench -- http
 *   BENCH_SECONDS=8 BENCH_ROUNDS=2 BENCH_WARMUP_SECONDS=5 npm run bench -- http
 *   BENCH_REQUESTS=GET BENCH_CONCURRENCY=1,8 npm run bench -- http   (some rows only)
 *
 * The servers run in a child process (bench/support/http-servers.ts, built to JavaScript first,
 * on the same Node as this one: Node 22 through tools/test-node) so that their CPU time is
 * measured alone. Coffer is
 * composed as the local server composes it; each floor is the unavoidable minimum of its request
 * on the same Hono + @hono/node-server stack:
 *
 * - GET: one strongly consistent GetItem of the version, then one PutItem of an audit-sized item
 *   (a fail-closed audited read cannot do less);
 * - PUT: one GetItem, then one TransactWriteItems with as many items, of the same sizes, as
 *   Coffer's transaction for a new version;
 * - batch-get of 20: one BatchGetItem of the 20 versions and one audit PutItem.
 *
 * For each request type and concurrency (1, 8, 32) it reports requests per second, p50 and p99
 * latency, Coffer's ratio to its floor, storage calls per request (an SDK middleware on each
 * server's client) and server CPU per request (the child's process.cpuUsage delta over the phase,
 * divided by the requests), and DynamoDB Local's CPU per request (from /proc: the storage engine
 * shares the machine's cores, so what a request costs it counts in every ratio). The load generator
 * is node:http with keep-alive sockets.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { startDynamoDbLocal } from '../lib/local/dynamodb-local.js';
import { totalCalls } from '../lib/store/call-counter.js';
import type { ServerStats, ServersReady } from './support/http-servers.js';

export interface HttpBenchRow {
  readonly request: 'GET' | 'PUT' | 'batch-get 20';
  readonly server: 'coffer' | 'floor';
  readonly concurrency: number;
  readonly requests: number;
  readonly perSecond: number;
  readonly p50ms: number;
  readonly p99ms: number;
  /** Coffer's requests per second over the floor's (coffer rows only). */
  readonly ratio?: number;
  readonly callsPerRequest: number;
  readonly calls: string;
  readonly cpuMsPerRequest: number;
  /** DynamoDB Local's CPU per request (the storage engine's share of the machine); NaN off Linux. */
  readonly storageCpuMsPerRequest: number;
}

const CONCURRENCY = [1, 8, 32] as const;
const round2 = (x: number) => Math.round(x * 100) / 100;
const percentile = (sorted: readonly number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))] ?? 0;

interface Target {
  readonly method: string;
  /** The path for worker `w`. */
  readonly path: (w: number) => string;
  readonly body?: string;
}

/** Requests from `concurrency` workers for `seconds`; every answer must be 200. */
async function load(base: string, token: string, target: Target, concurrency: number, seconds: number) {
  const url = new URL(base);
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  let failures = 0;
  let lastFailure = '';
  const once = (w: number) =>
    new Promise<void>((resolve, reject) => {
      const headers: Record<string, string> = { authorization: `Bearer ${token}` };
      if (target.body !== undefined) {
        headers['content-type'] = 'application/json';
        headers['content-length'] = String(Buffer.byteLength(target.body));
      }
      const req = request(
        { host: url.hostname, port: url.port, method: target.method, path: target.path(w), headers, agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            if (res.statusCode !== 200) {
              failures++;
              lastFailure = `${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 200)}`;
            }
            resolve();
          });
        },
      );
      req.on('error', reject);
      req.end(target.body);
    });
  const deadline = performance.now() + seconds * 1000;
  const began = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (performance.now() < deadline) {
        const start = performance.now();
        await once(w);
        latencies.push(performance.now() - start);
      }
    }),
  );
  const elapsed = (performance.now() - began) / 1000;
  agent.destroy();
  if (failures > 0) throw new Error(`${failures} requests failed, last: ${lastFailure}`);
  return { latencies, elapsed };
}

/**
 * The servers as built JavaScript, as production runs them: `coffer server` runs `tsc`'s output in
 * dist/ (and the Lambda an esbuild bundle of the same code). Run through tsx instead, every
 * function of lib/ made per request pays for tsx's name-keeping wrapper (`BENCH_SERVERS=tsx`
 * measures that way). This file's own code is compiled by esbuild with every import of lib/
 * pointed at dist/lib, so that Coffer and the floors' client are the build's, and node_modules
 * load as they do for the server.
 */
async function builtServers(source: string): Promise<string> {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const libDir = join(root, 'lib');
  const distLib = join(root, 'dist', 'lib');
  await assertBuilt(libDir, distLib);
  const outfile = join(root, '.bench-data', 'http-servers.mjs');
  await build({
    entryPoints: [source],
    outfile,
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node22',
    logLevel: 'error',
    plugins: [
      {
        name: 'lib-from-dist',
        setup(b) {
          b.onResolve({ filter: /^\.\.?\// }, (args) => {
            const target = resolve(args.resolveDir, args.path);
            if (!target.startsWith(`${libDir}${sep}`)) return undefined;
            return { path: join(distLib, relative(libDir, target)), external: true };
          });
        },
      },
    ],
  });
  return outfile;
}

/** dist/ must hold the build of the current lib/ (`npm ci` or `npm run build` makes it). */
async function assertBuilt(libDir: string, distLib: string): Promise<void> {
  const built = await stat(join(distLib, 'compose.js')).catch(() => undefined);
  const sources = (await readdir(libDir, { recursive: true })).filter((f) => f.endsWith('.ts'));
  const newest = Math.max(
    ...(await Promise.all(sources.map(async (f) => (await stat(join(libDir, f))).mtimeMs))),
  );
  if (!built || built.mtimeMs < newest) {
    throw new Error('dist/ is missing or older than lib/: run `npm run build` first (or BENCH_SERVERS=tsx)');
  }
}

/** The forked servers, and a way to ask them for their stats. */
async function startServers(endpoint: string) {
  const source = fileURLToPath(new URL('./support/http-servers.ts', import.meta.url));
  const asSource = process.env.BENCH_SERVERS === 'tsx';
  const child: ChildProcess = fork(asSource ? source : await builtServers(source), {
    execArgv: asSource ? ['--import', 'tsx'] : [],
    env: { ...process.env, BENCH_DYNAMODB_ENDPOINT: endpoint },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = await new Promise<ServersReady>((resolve, reject) => {
    child.once('message', (m) => resolve(m as ServersReady));
    child.once('exit', (code) => reject(new Error(`bench servers exited (${code}) before they were ready`)));
  });
  // A server process that dies mid-run (it has: a V8 fault, docs/benchmarks.md) fails the run with
  // its exit code instead of an unhandled EPIPE, so that the run's DynamoDB Local is still stopped.
  const stats = () =>
    new Promise<ServerStats>((resolve, reject) => {
      const died = (code: number | null, signal: string | null) =>
        reject(new Error(`bench servers exited (${code ?? signal}) during the run`));
      child.once('exit', died);
      child.once('message', (m) => {
        child.off('exit', died);
        resolve(m as ServerStats);
      });
      child.send({ type: 'stats' }, (err) => {
        if (err) reject(err);
      });
    });
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.send({ type: 'stop' }, (err) => {
        if (err) resolve();
      });
    });
  return { ready, stats, stop };
}

/**
 * A process's CPU time so far (user + system) in ms, from /proc (clock ticks of 10 ms: over a
 * phase of thousands of requests, fine); NaN where there is no /proc.
 */
async function processCpuMs(pid: number | undefined): Promise<number> {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return Number.NaN;
  }
}

/** What one server's phases of a row add up to. */
const phaseTotals = () => ({
  latencies: [] as number[],
  elapsed: 0,
  cpu: 0,
  engine: 0,
  calls: {} as Record<string, number>,
});

/** Runs the benchmark: one row per request type, server and concurrency. */
export async function run(): Promise<HttpBenchRow[]> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 4);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 1);
  // Long enough for V8 to finish optimizing the request path: with 1 s, the first measured phase
  // (GET at concurrency 1) still paid for compilation.
  const warmup = Number(process.env.BENCH_WARMUP_SECONDS ?? 3);
  // A subset for repeated runs of one row, e.g. BENCH_REQUESTS=GET BENCH_CONCURRENCY=1,8. The
  // warm-up still runs every request type, so the JIT state is the full run's.
  const concurrencies = process.env.BENCH_CONCURRENCY
    ? process.env.BENCH_CONCURRENCY.split(',').map(Number)
    : CONCURRENCY;
  const only = process.env.BENCH_REQUESTS?.split(',');
  const measured = (kinds: HttpBenchRow['request'][]) =>
    only ? kinds.filter((k) => only.includes(k)) : kinds;
  const ddb = await startDynamoDbLocal();
  try {
    const servers = await startServers(ddb.endpoint);
    try {
      const { ready } = servers;
      process.stderr.write(
        `servers on Node ${ready.node}; a Coffer PUT's transaction holds ${ready.transactItems} items (${ready.transactBytes} bytes as JSON), an audit record ${ready.auditItemBytes} bytes\n`,
      );
      const batchBody = JSON.stringify({ paths: ready.batchPaths });
      const putBody = JSON.stringify({ value: 'y'.repeat(64) });
      const targets: Record<HttpBenchRow['request'], Record<HttpBenchRow['server'], Target>> = {
        GET: {
          coffer: { method: 'GET', path: () => `/v1/secrets/${ready.getPath}` },
          floor: { method: 'GET', path: () => '/get' },
        },
        PUT: {
          coffer: { method: 'PUT', path: (w) => `/v1/secrets/bench/put/w${w}`, body: putBody },
          floor: { method: 'PUT', path: () => '/put', body: putBody },
        },
        'batch-get 20': {
          coffer: { method: 'POST', path: () => '/v1/batch-get', body: batchBody },
          floor: { method: 'POST', path: () => '/batch-get', body: batchBody },
        },
      };
      const base = { coffer: ready.coffer, floor: ready.floor };

      // Warm-up: JIT, sockets, DynamoDB Local's caches, Cedar's slices, and all 4 audit chains
      // started (8 in flight), so that no chain certificate falls into a measured phase.
      for (const kind of Object.keys(targets) as HttpBenchRow['request'][]) {
        for (const server of ['coffer', 'floor'] as const) {
          await load(base[server], ready.token, targets[kind][server], 8, warmup);
        }
      }
      await servers.stats();

      const rows: HttpBenchRow[] = [];
      for (const concurrency of concurrencies) {
        for (const kind of measured(Object.keys(targets) as HttpBenchRow['request'][])) {
          const acc = { coffer: phaseTotals(), floor: phaseTotals() };
          for (let round = 0; round < rounds; round++) {
            // Alternate which goes first, so that drift hits both alike.
            const order = round % 2 === 0 ? (['floor', 'coffer'] as const) : (['coffer', 'floor'] as const);
            for (const server of order) {
              const engineBefore = await processCpuMs(ddb.process.pid);
              const before = await servers.stats();
              const r = await load(base[server], ready.token, targets[kind][server], concurrency, seconds);
              const after = await servers.stats();
              const engineAfter = await processCpuMs(ddb.process.pid);
              const a = acc[server];
              a.latencies.push(...r.latencies);
              a.elapsed += r.elapsed;
              a.cpu += after.cpuMicros - before.cpuMicros;
              a.engine += engineAfter - engineBefore;
              for (const [op, k] of Object.entries(after.calls[server])) a.calls[op] = (a.calls[op] ?? 0) + k;
            }
          }
          const made: Partial<Record<'coffer' | 'floor', HttpBenchRow>> = {};
          for (const server of ['floor', 'coffer'] as const) {
            const a = acc[server];
            const n = a.latencies.length;
            const sorted = a.latencies.sort((x, y) => x - y);
            const perSecond = n / a.elapsed;
            const row: HttpBenchRow = {
              request: kind,
              server,
              concurrency,
              requests: n,
              perSecond: Math.round(perSecond),
              p50ms: round2(percentile(sorted, 0.5)),
              p99ms: round2(percentile(sorted, 0.99)),
              ...(server === 'coffer' && made.floor
                ? { ratio: round2(perSecond / (made.floor.requests / acc.floor.elapsed)) }
                : {}),
              callsPerRequest: round2(totalCalls(a.calls) / n),
              calls: Object.entries(a.calls)
                .sort(([x], [y]) => x.localeCompare(y))
                .map(([op, k]) => `${op} ${round2(k / n)}`)
                .join(', '),
              cpuMsPerRequest: round2(a.cpu / 1000 / n),
              storageCpuMsPerRequest: round2(a.engine / n),
            };
            made[server] = row;
            rows.push(row);
          }
        }
      }
      return rows;
    } finally {
      await servers.stop();
    }
  } finally {
    await ddb.stop();
  }
}

/** The rows as a Markdown table. */
export function markdown(rows: readonly HttpBenchRow[]): string {
  const lines = [
    '| request | server | concurrency | requests | req/s | p50 ms | p99 ms | × floor | storage calls / req | server CPU ms / req | DynamoDB Local CPU ms / req |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.request} | ${r.server} | ${r.concurrency} | ${r.requests} | ${r.perSecond} | ${r.p50ms} | ${r.p99ms} | ${r.ratio ?? ''} | ${r.callsPerRequest} (${r.calls}) | ${r.cpuMsPerRequest} | ${r.storageCpuMsPerRequest} |`,
    );
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const rows = await run();
  process.stdout.write(`${markdown(rows)}\n`);
}
