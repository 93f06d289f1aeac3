import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { type HttpBindings, type ServerType, serve } from '@hono/node-server';
import type { Context } from 'hono';
import { decodeJwt } from 'jose';
import { Checkpointer } from '../audit/checkpoint.js';
import { DEV_ADMIN_SUBJECT, DevIssuer } from '../authn/dev-issuer.js';
import { composeCoffer, loadAuthorizer } from '../compose.js';
import { DEFAULT_TABLES, type LocalSettings } from '../config.js';
import type { CofferConfig } from '../config-file.js';
import { ConfigError } from '../errors.js';
import type { ConnectionInfo } from '../http/app.js';
import { describeError, type Logger } from '../log.js';
import { localDynamoClient } from '../store/dynamo-client.js';
import { ensureTables } from '../store/tables.js';
import { type DynamoDbLocal, startDynamoDbLocal } from './dynamodb-local.js';
import { lockDataDir } from './lock.js';

/** Header limit of the node server: large enough for 8 KiB tokens to reach the app's own check. */
export const MAX_HEADER_BYTES = 64 * 1024;
const DEV_TOKEN_TTL_SECONDS = 30 * 86_400;
const PURGE_INTERVAL_MS = 10 * 60_000;
/** Audit checkpoints: at start, on this interval, and at shutdown. */
const CHECKPOINT_INTERVAL_MS = 5 * 60_000;
/** Audit chains written in parallel: requests wait only when more than this many write at once. */
const LOCAL_AUDIT_CHAINS = 4;
/** While the server runs, `<dataDir>/<this>` holds its DynamoDB endpoint (for `coffer audit`). */
export const DYNAMODB_ENDPOINT_FILE = 'dynamodb-endpoint';

/** Where the local server's side outputs go; the CLI passes stdout for the audit copy. */
export interface LocalServerHooks {
  /** One JSON line per audit record and checkpoint. */
  readonly auditSink?: (line: string) => void;
  readonly checkpointIntervalMs?: number;
  /** Aborts the start: what was started is stopped and the start rejects. */
  readonly signal?: AbortSignal;
}

export interface LocalServer {
  readonly url: string;
  readonly tokenFile: string;
  readonly dynamodbEndpoint: string;
  stop(): Promise<void>;
}

/**
 * What the node server knows about the connection: the peer address and the request target as
 * sent (the path before URL parsing; an absolute-form target keeps only its path).
 */
export function connectionFromIncoming(env: HttpBindings | undefined): ConnectionInfo {
  const sourceIp = env?.incoming?.socket?.remoteAddress ?? 'unknown';
  const target = env?.incoming?.url;
  if (typeof target !== 'string') return { sourceIp };
  const path = target.split('?', 1)[0] ?? '';
  const rawPath = path.startsWith('/') ? path : path.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*/, '');
  return { sourceIp, rawPath };
}

/** A listen failure as one line: the usual one is a port already taken by another program. */
function listenError(err: unknown, port: number): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'EADDRINUSE') {
    return new ConfigError(
      `port ${port} on 127.0.0.1 is already in use (another Coffer server?): stop it, or set COFFER_PORT to a free port`,
    );
  }
  if (code === 'EACCES') {
    return new ConfigError(
      `port ${port} on 127.0.0.1 needs privileges: set COFFER_PORT to a port above 1023`,
    );
  }
  return err;
}

/** Fails early when the API port is taken (port 0 means any free port and is always free). */
async function assertPortFree(port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err) => reject(listenError(err, port)));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
  });
}

/** Writes a fresh admin token unless the current one is valid for at least another day. */
async function ensureDevToken(issuer: DevIssuer, file: string): Promise<void> {
  try {
    const current = (await readFile(file, 'utf8')).trim();
    const { exp } = decodeJwt(current);
    if (typeof exp === 'number' && exp - Date.now() / 1000 > 86_400) {
      await chmod(file, 0o600);
      return;
    }
  } catch {
    // Missing or unreadable: write a new one.
  }
  const token = await issuer.mint({
    subject: DEV_ADMIN_SUBJECT,
    groups: ['admins'],
    ttlSeconds: DEV_TOKEN_TTL_SECONDS,
  });
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
}

/**
 * The local server: DynamoDB Local (unless an endpoint is given), tables, the local key
 * provider, the dev issuer and the HTTP API on 127.0.0.1 only. `config` is the parsed
 * COFFER_CONFIG (the caller reads it): its issuers are trusted next to the dev issuer.
 */
export async function startLocalServer(
  settings: LocalSettings,
  logger: Logger,
  config: CofferConfig = { issuers: [] },
  hooks: LocalServerHooks = {},
): Promise<LocalServer> {
  // Policies first: an invalid policy set stops the start (naming file and line) before anything
  // is started that would need stopping.
  const authorizer = await loadAuthorizer({ dir: settings.policyDir }, logger);
  // The data dir and the port before DynamoDB Local: a second server on the same data dir must not
  // touch the first one's engine, and a busy port is reported before a 10-second Java start.
  const lock = lockDataDir(settings.dataDir);
  let ddb: DynamoDbLocal | undefined;
  try {
    await assertPortFree(settings.port);
    ddb = settings.dynamodbEndpoint
      ? undefined
      : await startDynamoDbLocal({
          dbPath: join(settings.dataDir, 'dynamodb'),
          ownProcessGroup: true,
          ...(hooks.signal ? { signal: hooks.signal } : {}),
        });
  } catch (err) {
    lock.release();
    throw err;
  }
  const endpoint = settings.dynamodbEndpoint ?? (ddb as DynamoDbLocal).endpoint;
  const client = localDynamoClient(endpoint);
  let server: ServerType | undefined;
  let timer: NodeJS.Timeout | undefined;
  let checkpointTimer: NodeJS.Timeout | undefined;
  const aborted = () => {
    if (hooks.signal?.aborted) throw new Error('start aborted');
  };
  try {
    aborted();
    try {
      await ensureTables(client, settings.tables ?? DEFAULT_TABLES);
    } catch (err) {
      // Usually an endpoint given in COFFER_DYNAMODB_ENDPOINT that is not running: one line.
      const e = err as NodeJS.ErrnoException;
      const why = e?.code ?? e?.name ?? 'error';
      throw new ConfigError(
        `cannot use DynamoDB at ${endpoint}${settings.dynamodbEndpoint ? ' (COFFER_DYNAMODB_ENDPOINT)' : ''}: ${why}; is it running?`,
      );
    }
    // The dev issuer before the composition: the authenticator trusts its key.
    const issuer = await DevIssuer.open(settings.dataDir);
    const tokenFile = join(settings.dataDir, 'dev-token');
    await ensureDevToken(issuer, tokenFile);

    const sink = hooks.auditSink ? { sink: hooks.auditSink } : {};
    const coffer = await composeCoffer({
      dynamo: client,
      tables: settings.tables ?? DEFAULT_TABLES,
      keys: { kind: 'local', dataDir: settings.dataDir },
      audit: {
        kind: 'dynamo',
        writer: 'local-server',
        chains: LOCAL_AUDIT_CHAINS,
        ...sink,
      },
      policy: { authorizer },
      authn: { config, devIssuerKey: issuer.publicKey },
      connection: (c: Context) => connectionFromIncoming(c.env as HttpBindings | undefined),
      logger,
    });
    const { app, audit, purger } = coffer;
    const checkpointer = new Checkpointer({
      client,
      table: (settings.tables ?? DEFAULT_TABLES).audit,
      root: coffer.auditRoot,
      ...sink,
      // Signs the control records' generations: a rollback of one is visible to the verifier.
      generations: () => coffer.control.generations(),
      // The server knows what it wrote: a chain's tail removed since the last checkpoint is
      // signed as it was written, so `coffer audit verify` reports the chain truncated.
      writtenHeads: () => audit.writtenHeads(),
      onBehind: (head, tableSeq) =>
        logger.error('audit chain is shorter in the table than written', {
          chain: head.chain,
          writtenSeq: head.seq,
          tableSeq: tableSeq ?? null,
        }),
    });

    const purge = async () => {
      try {
        const purged = await purger.purgeExpired();
        if (purged > 0) logger.info('purged expired soft-deleted secrets', { purged });
      } catch (err) {
        logger.warn('purge failed', describeError(err));
      }
    };
    await purge();
    timer = setInterval(purge, PURGE_INTERVAL_MS);
    timer.unref();
    const checkpoint = async () => {
      try {
        audit.sealed((await checkpointer.write()).heads);
      } catch (err) {
        logger.warn('audit checkpoint failed', describeError(err));
      }
    };
    await checkpoint();
    aborted();
    checkpointTimer = setInterval(checkpoint, hooks.checkpointIntervalMs ?? CHECKPOINT_INTERVAL_MS);
    checkpointTimer.unref();

    const listening = await new Promise<ServerType>((resolve, reject) => {
      const s = serve(
        {
          fetch: app.fetch,
          hostname: '127.0.0.1',
          port: settings.port,
          serverOptions: { maxHeaderSize: MAX_HEADER_BYTES },
        },
        () => resolve(s),
      );
      s.once('error', (err) => reject(listenError(err, settings.port)));
    });
    server = listening;
    const port = (listening.address() as AddressInfo).port;
    const endpointFile = join(settings.dataDir, DYNAMODB_ENDPOINT_FILE);
    await writeFile(endpointFile, `${endpoint}\n`, { mode: 0o600 });
    return {
      url: `http://127.0.0.1:${port}`,
      tokenFile,
      dynamodbEndpoint: endpoint,
      stop: async () => {
        if (timer) clearInterval(timer);
        if (checkpointTimer) clearInterval(checkpointTimer);
        await new Promise<void>((resolve) => listening.close(() => resolve()));
        // The last checkpoint seals every record this server wrote.
        await checkpoint();
        await rm(endpointFile, { force: true });
        client.destroy();
        await ddb?.stop();
        lock.release();
      },
    };
  } catch (err) {
    if (timer) clearInterval(timer);
    if (checkpointTimer) clearInterval(checkpointTimer);
    server?.close();
    client.destroy();
    await ddb?.stop();
    lock.release();
    throw err;
  }
}
