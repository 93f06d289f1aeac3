/**
 * Audit cost on the local server: reads per second and latency with the audit trail on and off,
 * in the same run, against the same DynamoDB Local.
 *
 *   npx tsx bench/audit.bench.ts            (or through bench/run.ts)
 *   BENCH_SECONDS=10 npx tsx bench/audit.bench.ts
 *
 * Each configuration serves the real Hono app over @hono/node-server on 127.0.0.1, like
 * `coffer server --dev`; the client is fetch with keep-alive. Off and on alternate in rounds so
 * that drift (JIT warm-up, DynamoDB Local's own caches) hits both alike.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type ServerType, serve } from '@hono/node-server';
import { DynamoAuditTrail } from '../lib/audit/dynamo-trail.js';
import { openAuditHmacKey } from '../lib/audit/hmac-key.js';
import { hmacFieldHasher } from '../lib/audit/record.js';
import { type AuditTrail, NoAuditTrail } from '../lib/audit/trail.js';
import { DevAuthenticator } from '../lib/authn/dev-authenticator.js';
import { DevIssuer } from '../lib/authn/dev-issuer.js';
import { AllowAllAuthorizer } from '../lib/authz/authorizer.js';
import { Envelope } from '../lib/crypto/envelope.js';
import { createApp } from '../lib/http/app.js';
import { LocalKeyProvider, LocalRootSigner } from '../lib/keys/local.js';
import { startDynamoDbLocal } from '../lib/local/dynamodb-local.js';
import { silentLogger } from '../lib/log.js';
import { SecretService } from '../lib/secrets/service.js';
import { localDynamoClient } from '../lib/store/dynamo-client.js';
import { SecretsStore } from '../lib/store/secrets-store.js';
import { ensureTables } from '../lib/store/tables.js';

export interface AuditBenchRow {
  readonly audit: 'off' | 'on';
  readonly concurrency: number;
  readonly requests: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50ms: number;
  readonly p99ms: number;
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((sorted.length - 1) * p))] ?? 0;

async function load(url: string, token: string, concurrency: number, seconds: number) {
  const latencies: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  let failures = 0;
  const worker = async () => {
    while (performance.now() < deadline) {
      const start = performance.now();
      const res = await fetch(`${url}/v1/secrets/bench/db/password`, {
        headers: { authorization: `Bearer ${token}` },
      });
      await res.arrayBuffer();
      if (res.status !== 200) failures++;
      latencies.push(performance.now() - start);
    }
  };
  const began = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (performance.now() - began) / 1000;
  if (failures > 0) throw new Error(`${failures} reads failed`);
  latencies.sort((a, b) => a - b);
  return { requests: latencies.length, seconds: elapsed, latencies };
}

/** Runs the benchmark; returns one row per configuration (the rounds summed). */
export async function run(): Promise<AuditBenchRow[]> {
  const seconds = Number(process.env.BENCH_SECONDS ?? 5);
  const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
  const ddb = await startDynamoDbLocal();
  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-bench-audit-'));
  const client = localDynamoClient(ddb.endpoint);
  const servers: ServerType[] = [];
  try {
    const tables = { secrets: 'bench-secrets', audit: 'bench-audit' };
    await ensureTables(client, tables);
    const keys = await LocalKeyProvider.open(dataDir);
    const issuer = await DevIssuer.open(dataDir);
    const token = await issuer.mint({ subject: 'bench', groups: ['admins'] });
    const trails: Record<'off' | 'on', AuditTrail> = {
      off: new NoAuditTrail(),
      // As the local server wires it (4 chains unless BENCH_CHAINS), HMAC key, a sink that serializes each line.
      on: new DynamoAuditTrail({
        client,
        table: tables.audit,
        root: await LocalRootSigner.open(dataDir),
        fieldHasher: hmacFieldHasher(await openAuditHmacKey(dataDir)),
        chains: Number(process.env.BENCH_CHAINS ?? 4),
        writer: 'bench',
        sink: () => {},
      }),
    };
    const urls = {} as Record<'off' | 'on', string>;
    for (const mode of ['off', 'on'] as const) {
      const service = new SecretService({
        store: new SecretsStore(client, tables.secrets),
        envelope: new Envelope(keys),
        authorizer: new AllowAllAuthorizer(),
        audit: trails[mode],
      });
      const app = createApp({
        service,
        authenticator: new DevAuthenticator(issuer.publicKey),
        audit: trails[mode],
        logger: silentLogger,
        connection: () => ({ sourceIp: '127.0.0.1' }),
      });
      const server = await new Promise<ServerType>((resolve) => {
        const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
      });
      servers.push(server);
      urls[mode] = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    }
    const put = await fetch(`${urls.on}/v1/secrets/bench/db/password`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ value: 'bench-value' }),
    });
    if (put.status !== 200) throw new Error(`setup write failed: ${put.status}`);

    // Warm-up: JIT, connection pools, DynamoDB Local.
    for (const mode of ['off', 'on'] as const) await load(urls[mode], token, 4, 1);

    const rows: AuditBenchRow[] = [];
    for (const concurrency of [1, 8]) {
      const acc = {
        off: { requests: 0, seconds: 0, latencies: [] as number[] },
        on: { requests: 0, seconds: 0, latencies: [] as number[] },
      };
      for (let round = 0; round < rounds; round++) {
        for (const mode of round % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
          const r = await load(urls[mode], token, concurrency, seconds);
          acc[mode].requests += r.requests;
          acc[mode].seconds += r.seconds;
          acc[mode].latencies.push(...r.latencies);
        }
      }
      for (const mode of ['off', 'on'] as const) {
        const sorted = acc[mode].latencies.sort((a, b) => a - b);
        rows.push({
          audit: mode,
          concurrency,
          requests: acc[mode].requests,
          seconds: Math.round(acc[mode].seconds * 10) / 10,
          perSecond: Math.round(acc[mode].requests / acc[mode].seconds),
          p50ms: Math.round(percentile(sorted, 0.5) * 100) / 100,
          p99ms: Math.round(percentile(sorted, 0.99) * 100) / 100,
        });
      }
    }
    return rows;
  } finally {
    for (const s of servers) s.close();
    client.destroy();
    await ddb.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** The rows as a Markdown table, with the audit overhead per concurrency. */
export function markdown(rows: readonly AuditBenchRow[]): string {
  const lines = [
    '| audit | concurrency | reads | reads/s | p50 ms | p99 ms | overhead |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const off = rows.find((r) => r.audit === 'off' && r.concurrency === row.concurrency);
    const overhead =
      row.audit === 'on' && off
        ? `${Math.round((1 - row.perSecond / off.perSecond) * 100)}% fewer reads/s`
        : '';
    lines.push(
      `| ${row.audit} | ${row.concurrency} | ${row.requests} | ${row.perSecond} | ${row.p50ms} | ${row.p99ms} | ${overhead} |`,
    );
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const rows = await run();
  process.stdout.write(`${markdown(rows)}\n`);
}
