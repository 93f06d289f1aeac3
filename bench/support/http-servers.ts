/**
 * The server side of `npm run bench -- http`, run as a child process (forked by
 * bench/http.bench.ts) so that its CPU time is its own and not the load generator's: Coffer as the
 * local server composes it, and the floor servers on the same Hono + @hono/node-server stack, all
 * over the DynamoDB Local whose endpoint the parent passes in `BENCH_DYNAMODB_ENDPOINT`.
 *
 * Each server has its own DynamoDB client with a call counter, so that calls per request are
 * counted per server on the wire. The parent asks over IPC for `stats` (cumulative process CPU and
 * the calls since the last ask) around each measured phase.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BatchGetItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  type TransactWriteItem,
  TransactWriteItemsCommand,
} from '@aws-sdk/client-dynamodb';
import { type HttpBindings, type ServerType, serve } from '@hono/node-server';
import { type Context, Hono } from 'hono';
import { DevIssuer } from '../../lib/authn/dev-issuer.js';
import { composeCoffer } from '../../lib/compose.js';
import { DEFAULT_POLICY_DIR } from '../../lib/config.js';
import { connectionFromIncoming, MAX_HEADER_BYTES } from '../../lib/local/server.js';
import { silentLogger } from '../../lib/log.js';
import {
  countStorageCalls,
  observeStorageCalls,
  type StorageCallCounter,
} from '../../lib/store/call-counter.js';
import { localDynamoClient } from '../../lib/store/dynamo-client.js';
import { ensureTables } from '../../lib/store/tables.js';

type Item = NonNullable<TransactWriteItem['Put']>['Item'];

/** What the parent is told once everything listens. */
export interface ServersReady {
  readonly type: 'ready';
  readonly coffer: string;
  readonly floor: string;
  readonly token: string;
  readonly node: string;
  /** Secrets the batch-get reads (20), and the path the GETs read. */
  readonly batchPaths: readonly string[];
  readonly getPath: string;
  /** What one Coffer PUT's transaction holds, which the PUT floor copies: item count and bytes. */
  readonly transactItems: number;
  readonly transactBytes: number;
  readonly auditItemBytes: number;
}

export interface ServerStats {
  readonly type: 'stats';
  /** Cumulative process CPU (user + system), microseconds. */
  readonly cpuMicros: number;
  /** Calls since the last `stats`, per server and operation. */
  readonly calls: { readonly coffer: Record<string, number>; readonly floor: Record<string, number> };
}

const listen = (fetch: Parameters<typeof serve>[0]['fetch']) =>
  new Promise<ServerType>((resolve) => {
    const s = serve(
      { fetch, hostname: '127.0.0.1', port: 0, serverOptions: { maxHeaderSize: MAX_HEADER_BYTES } },
      () => resolve(s),
    );
  });

const urlOf = (s: ServerType) => `http://127.0.0.1:${(s.address() as AddressInfo).port}`;

/** Records the input of the calls a client sends, by operation, until stopped (both transports). */
function captureInputs(client: DynamoDBClient) {
  const inputs = new Map<string, unknown[]>();
  const stop = observeStorageCalls(client, (op, input) => {
    inputs.set(op, [...(inputs.get(op) ?? []), structuredClone(input)]);
  });
  return { inputs, stop };
}

const bytesOf = (x: unknown) => Buffer.byteLength(JSON.stringify(x));

async function main(): Promise<void> {
  const endpoint = process.env.BENCH_DYNAMODB_ENDPOINT;
  if (!endpoint) throw new Error('BENCH_DYNAMODB_ENDPOINT is not set');
  const dataDir = await mkdtemp(join(tmpdir(), 'coffer-bench-http-'));
  const suffix = randomBytes(3).toString('hex');
  const tables = { secrets: `bench-http-secrets-${suffix}`, audit: `bench-http-audit-${suffix}` };
  const cofferClient = localDynamoClient(endpoint);
  const floorClient = localDynamoClient(endpoint);
  await ensureTables(cofferClient, tables);

  // Coffer exactly as `coffer server --dev` composes it: local keys, the signed audit trail with
  // 4 chains, the shipped Cedar policies, the dev issuer.
  const issuer = await DevIssuer.open(dataDir);
  const coffer = await composeCoffer({
    dynamo: cofferClient,
    tables,
    keys: { kind: 'local', dataDir },
    audit: { kind: 'dynamo', writer: 'bench', chains: 4, sink: () => {} },
    policy: { dir: DEFAULT_POLICY_DIR },
    authn: { config: { issuers: [] }, devIssuerKey: issuer.publicKey },
    connection: (c: Context) => connectionFromIncoming(c.env as HttpBindings | undefined),
    logger: silentLogger,
  });
  const token = await issuer.mint({ subject: 'dev-admin', groups: ['admins'] });
  const cofferServer = await listen(coffer.app.fetch);
  const cofferUrl = urlOf(cofferServer);
  const call = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(`${cofferUrl}${route}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (res.status !== 200) throw new Error(`setup ${method} ${route}: ${res.status} ${await res.text()}`);
    return res.json() as Promise<Record<string, unknown>>;
  };

  // The data: a secret the GETs read, 20 the batch reads, and one secret per PUT worker (so that
  // concurrent writers never conflict), allowed 1000 versions so that no PUT prunes.
  const value = 'x'.repeat(64);
  const getPath = 'bench/get/db-password';
  await call('PUT', `/v1/secrets/${getPath}`, { value });
  const batchPaths = Array.from({ length: 20 }, (_, i) => `bench/batch/s${String(i).padStart(2, '0')}`);
  for (const p of batchPaths) await call('PUT', `/v1/secrets/${p}`, { value });
  for (let w = 0; w < 32; w++) {
    await call('PUT', `/v1/secrets/bench/put/w${w}`, { value });
    await call('PATCH', `/v1/meta/bench/put/w${w}`, { maxVersions: 1000 });
  }

  // One GET and one PUT as the benchmark sends them, to copy their storage shapes into the floors.
  const capture = captureInputs(cofferClient);
  await call('GET', `/v1/secrets/${getPath}`);
  await call('PUT', '/v1/secrets/bench/put/w0', { value });
  capture.stop();
  // The item the floor's GET reads: the version item (Coffer reads it with the head in one
  // BatchGetItem, from its copy in the current item, since issue 18).
  const versionKey: Item = { pk: { S: `S#${getPath}` }, sk: { S: 'V#0000000001' } };
  const auditItem = (capture.inputs.get('PutItem')?.[0] as { Item: Item } | undefined)?.Item;
  const transact = (capture.inputs.get('TransactWriteItems')?.[0] as { TransactItems: TransactWriteItem[] })
    ?.TransactItems;
  if (!auditItem || !transact) throw new Error('could not capture the storage shapes');
  const batchKeys = batchPaths.map((p) => ({ pk: { S: `S#${p}` }, sk: { S: 'V#0000000001' } }));

  // The floors: the unavoidable minimum of each request, on the same stack, nothing else.
  let n = 0;
  const fresh = (item: Item, table: string, i = 0) => ({
    TableName: table,
    Item: { ...item, pk: { S: `FLOOR#${process.pid}#${++n}#${i}` }, sk: { S: 'F' } },
    ConditionExpression: 'attribute_not_exists(pk)',
  });
  const floor = new Hono();
  // GET: read the version strongly consistent, write an audit-sized record, answer.
  floor.get('/get', async (c) => {
    const got = await floorClient.send(
      new GetItemCommand({ TableName: tables.secrets, Key: versionKey, ConsistentRead: true }),
    );
    await floorClient.send(new PutItemCommand(fresh(auditItem, tables.audit)));
    return c.json({ path: getPath, version: 1, value: got.Item ? value : '' });
  });
  // PUT: read one item, then one transaction with as many items of the same sizes as Coffer's.
  floor.put('/put', async (c) => {
    await c.req.json();
    await floorClient.send(
      new GetItemCommand({ TableName: tables.secrets, Key: versionKey, ConsistentRead: true }),
    );
    await floorClient.send(
      new TransactWriteItemsCommand({
        TransactItems: transact.map((t, i) => {
          const put = t.Put ?? { TableName: tables.secrets, Item: (t.Update?.Key ?? t.Delete?.Key) as Item };
          return { Put: fresh(put.Item, put.TableName ?? tables.secrets, i) };
        }),
      }),
    );
    return c.json({ path: 'bench/put', version: 1, createdAt: new Date().toISOString() });
  });
  // Batch of 20: one BatchGetItem of the 20 versions, one audit record (the design target's shape).
  floor.post('/batch-get', async (c) => {
    await c.req.json();
    const got = await floorClient.send(
      new BatchGetItemCommand({
        RequestItems: { [tables.secrets]: { Keys: batchKeys, ConsistentRead: true } },
      }),
    );
    await floorClient.send(new PutItemCommand(fresh(auditItem, tables.audit)));
    return c.json({ results: got.Responses?.[tables.secrets]?.map((i) => ({ path: i.path?.S })) ?? [] });
  });
  const floorServer = await listen(floor.fetch);

  const counters: { coffer: StorageCallCounter; floor: StorageCallCounter } = {
    coffer: countStorageCalls(cofferClient),
    floor: countStorageCalls(floorClient),
  };
  const cpu = () => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  const stop = async () => {
    cofferServer.close();
    floorServer.close();
    cofferClient.destroy();
    floorClient.destroy();
    await rm(dataDir, { recursive: true, force: true });
    process.exit(0);
  };
  process.on('message', (msg: { type: string }) => {
    if (msg.type === 'stats') {
      const stats: ServerStats = {
        type: 'stats',
        cpuMicros: cpu(),
        calls: { coffer: counters.coffer.take(), floor: counters.floor.take() },
      };
      process.send?.(stats);
    } else if (msg.type === 'stop') {
      void stop();
    }
  });
  process.on('disconnect', () => void stop());
  const ready: ServersReady = {
    type: 'ready',
    coffer: cofferUrl,
    floor: urlOf(floorServer),
    token,
    node: process.version,
    batchPaths,
    getPath,
    transactItems: transact.length,
    transactBytes: bytesOf(transact),
    auditItemBytes: bytesOf(auditItem),
  };
  process.send?.(ready);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench servers failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
