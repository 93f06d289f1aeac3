import { chmod, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createSecureContext, TLSSocket } from 'node:tls';
import { type HttpBindings, type ServerType, serve } from '@hono/node-server';
import type { Context } from 'hono';
import { decodeJwt } from 'jose';
import { Checkpointer } from '../audit/checkpoint.js';
import { checkedGenerations } from '../audit/checkpoint-job.js';
import { assertDistinctCaSubjects } from '../authn/certificate.js';
import { DEV_ADMIN_SUBJECT, DevIssuer } from '../authn/dev-issuer.js';
import type { Authorizer } from '../authz/authorizer.js';
import { composeCoffer, loadAuthorizer } from '../compose.js';
import { DEFAULT_TABLES, type LocalSettings, type LocalTlsSettings } from '../config.js';
import type { CofferConfig } from '../config-file.js';
import { signedGenerations } from '../control/signed-generations.js';
import { ConfigError } from '../errors.js';
import type { ConnectionInfo } from '../http/app.js';
import type { KeyAdmin } from '../keys/key-admin.js';
import { DEFAULT_REWRAP_EVERY_SECONDS, rewrapTick } from '../keys/rewrap-schedule.js';
import { describeError, type Logger } from '../log.js';
import { rateLimitedLogger } from '../log-limit.js';
import { WebhookInvoker } from '../secrets/rotators/webhook.js';
import { localDynamoClient } from '../store/dynamo-client.js';
import { ensureTables } from '../store/tables.js';
import { startDynamoDbLocal, waitForDynamoDbLocal } from './dynamodb-local.js';
import { type PolicyWatch, watchPolicyDir } from './policy-watch.js';
import { type LocalPrestart, listenError, prestartLocal } from './prestart.js';
import { DynamoDbSupervisor, type SupervisorOptions } from './supervisor.js';

/** Header limit of the node server: large enough for 8 KiB tokens to reach the app's own check. */
export const MAX_HEADER_BYTES = 64 * 1024;
const DEV_TOKEN_TTL_SECONDS = 30 * 86_400;
const PURGE_INTERVAL_MS = 10 * 60_000;
/** Due rotations: at start and on this interval. */
const ROTATION_INTERVAL_MS = 60_000;

/** The re-wrap schedule's tick, on the purge timer: a slice of at most a minute each time. */
async function rewrap(
  admin: KeyAdmin | undefined,
  everySeconds: number | undefined,
  logger: Logger,
): Promise<void> {
  if (!admin || everySeconds === 0) return;
  try {
    const tick = await rewrapTick(admin, {
      everySeconds: everySeconds ?? DEFAULT_REWRAP_EVERY_SECONDS,
      budgetMs: 60_000,
    });
    if (tick.ran !== 'idle' || tick.destroyed.length > 0) {
      logger.info('key re-wrap', {
        ran: tick.ran,
        rewrapped: tick.cursor?.rewrapped ?? 0,
        done: tick.cursor?.done ?? true,
        destroyed: tick.destroyed.length,
      });
    }
  } catch (err) {
    logger.warn('key re-wrap failed', describeError(err));
  }
}
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
  /** How often due rotations run. Default one minute. */
  readonly rotationIntervalMs?: number;
  /** Aborts the start: what was started is stopped and the start rejects. */
  readonly signal?: AbortSignal;
  /**
   * The data-dir lock and the spawned Java, taken by `coffer server` before it loaded this module
   * (prestart.ts). The server owns them from here on, also when its start fails.
   */
  readonly prestart?: LocalPrestart;
  /** How often a DynamoDB Local that exits is restarted (defaults in supervisor.ts). */
  readonly restarts?: Pick<SupervisorOptions, 'maxRestarts' | 'windowMs' | 'backoffMs'>;
}

export interface LocalServer {
  readonly url: string;
  readonly tokenFile: string;
  readonly dynamodbEndpoint: string;
  /** The pid of the DynamoDB Local it runs (none with COFFER_DYNAMODB_ENDPOINT). */
  dynamodbPid(): number | undefined;
  /**
   * Settles when the server can no longer serve: its DynamoDB Local kept exiting. The caller
   * stops the server and exits non-zero.
   */
  readonly failed: Promise<Error>;
  stop(): Promise<void>;
}

/**
 * What the node server knows about the connection: the peer address, the request target as
 * sent (the path before URL parsing; an absolute-form target keeps only its path) and, on a TLS
 * connection that presented one, the client certificate with TLS's verdict on it
 * (`socket.authorized`: it chains to COFFER_TLS_CLIENT_CA and is within its dates). Only the
 * socket speaks here: no header can claim a certificate.
 */
export function connectionFromIncoming(env: HttpBindings | undefined): ConnectionInfo {
  const socket = env?.incoming?.socket;
  const sourceIp = socket?.remoteAddress ?? 'unknown';
  const certificate = socket instanceof TLSSocket ? socket.getPeerX509Certificate() : undefined;
  const clientCertificate = certificate
    ? {
        clientCertificate: {
          source: 'tls' as const,
          certificate,
          verified: (socket as TLSSocket).authorized,
        },
      }
    : {};
  const target = env?.incoming?.url;
  if (typeof target !== 'string') return { sourceIp, ...clientCertificate };
  const path = target.split('?', 1)[0] ?? '';
  const rawPath = path.startsWith('/') ? path : path.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/]*/, '');
  return { sourceIp, rawPath, ...clientCertificate };
}

/** The PEM files of COFFER_TLS_*, read once at start. */
interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
  readonly ca?: string;
}

async function readTlsFile(path: string, variable: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `cannot read ${variable} (${path}): ${(err as NodeJS.ErrnoException)?.code ?? 'error'}`,
    );
  }
}

/**
 * Reads the TLS files. Two client CAs with one subject DN are refused: certificate principals name
 * their issuer by DN, so such CAs could issue each other's identities.
 */
async function loadTls(tls: LocalTlsSettings): Promise<TlsMaterial> {
  const cert = await readTlsFile(tls.cert, 'COFFER_TLS_CERT');
  const key = await readTlsFile(tls.key, 'COFFER_TLS_KEY');
  try {
    // Here rather than in the listen: a key that is not the certificate's is one line at start.
    createSecureContext({ cert, key });
  } catch {
    throw new ConfigError(
      'COFFER_TLS_CERT and COFFER_TLS_KEY must be a PEM certificate and its own private key (unencrypted)',
    );
  }
  if (tls.clientCa === undefined) return { cert, key };
  const ca = await readTlsFile(tls.clientCa, 'COFFER_TLS_CLIENT_CA');
  assertDistinctCaSubjects(ca);
  return { cert, key, ca };
}

/**
 * Options of the node HTTPS server. With a client CA, every handshake asks for a certificate but
 * does not require one (`rejectUnauthorized: false`): callers without a certificate use bearer
 * tokens, and one that fails verification reaches the authenticator marked unverified, which
 * refuses it with the same 401 as any other bad credential.
 */
function tlsServerOptions(tls: TlsMaterial) {
  return {
    cert: tls.cert,
    key: tls.key,
    ...(tls.ca !== undefined ? { ca: tls.ca, requestCert: true, rejectUnauthorized: false } : {}),
  };
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
  baseLogger: Logger,
  config: CofferConfig = { issuers: [] },
  hooks: LocalServerHooks = {},
): Promise<LocalServer> {
  // One line per request while DynamoDB is down would bury the line that says why.
  const logger = rateLimitedLogger(baseLogger);
  let tls: TlsMaterial | undefined;
  try {
    tls = settings.tls ? await loadTls(settings.tls) : undefined;
  } catch (err) {
    hooks.prestart?.release();
    throw err;
  }
  // The data dir, the port and the Java spawn (prestart.ts), unless the caller took them already.
  const prestart = hooks.prestart ?? (await prestartLocal(settings));
  const { lock } = prestart;
  let firstEngine = prestart.dynamodb;
  let ddb: DynamoDbSupervisor | undefined;
  let authorizer: Authorizer;
  let issuer: DevIssuer;
  const tokenFile = join(settings.dataDir, 'dev-token');
  let giveUp: (err: Error) => void = () => {};
  const failed = new Promise<Error>((resolve) => {
    giveUp = resolve;
  });
  try {
    // Java (seconds) and the policies (parsed and validated, mostly CPU) at the same time: the JVM
    // starts in its own process while this one validates. An invalid policy set still stops the
    // start, naming file and line, with nothing left running: it aborts the Java start.
    const policiesFailed = new AbortController();
    const startSignal = hooks.signal
      ? AbortSignal.any([hooks.signal, policiesFailed.signal])
      : policiesFailed.signal;
    const engine = settings.dynamodbEndpoint
      ? Promise.resolve(undefined)
      : DynamoDbSupervisor.start({
          // The first start waits for the Java spawned by the prestart; a restart spawns anew.
          start: (port) => {
            const spawned = port === undefined ? firstEngine : undefined;
            firstEngine = undefined;
            return spawned
              ? waitForDynamoDbLocal(spawned, startSignal)
              : startDynamoDbLocal({
                  dbPath: join(settings.dataDir, 'dynamodb'),
                  ownProcessGroup: true,
                  quickStart: true,
                  ...(port !== undefined ? { port } : {}),
                  signal: startSignal,
                });
          },
          logger,
          onGiveUp: (err) => giveUp(err),
          ...hooks.restarts,
        });
    const policies = loadAuthorizer({ dir: settings.policyDir }, logger).catch((err: unknown) => {
      policiesFailed.abort();
      throw err;
    });
    // The dev issuer and its token need only the data dir: they are ready while Java starts too.
    const dev = (async () => {
      const opened = await DevIssuer.open(settings.dataDir);
      await ensureDevToken(opened, tokenFile);
      return opened;
    })();
    const [loaded, started, devReady] = await Promise.allSettled([policies, engine, dev]);
    if (started.status === 'fulfilled') ddb = started.value;
    if (loaded.status === 'rejected') throw loaded.reason;
    if (started.status === 'rejected') throw started.reason;
    if (devReady.status === 'rejected') throw devReady.reason;
    authorizer = loaded.value;
    issuer = devReady.value;
  } catch (err) {
    await ddb?.stop();
    prestart.release();
    logger.close();
    throw err;
  }
  const endpoint = settings.dynamodbEndpoint ?? (ddb as DynamoDbSupervisor).endpoint;
  // Its own engine gets the commit barrier (dynamo-client.ts): an acknowledged write survives a
  // killed Java. An engine given by COFFER_DYNAMODB_ENDPOINT may be DynamoDB Local too.
  const client = localDynamoClient(endpoint, { commitBarrier: true });
  let server: ServerType | undefined;
  let timer: NodeJS.Timeout | undefined;
  let checkpointTimer: NodeJS.Timeout | undefined;
  let rotationTimer: NodeJS.Timeout | undefined;
  let policyWatch: PolicyWatch | undefined;
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
      ...(settings.control ? { control: settings.control } : {}),
      authn: { config, devIssuerKey: issuer.publicKey },
      connection: (c: Context) => connectionFromIncoming(c.env as HttpBindings | undefined),
      logger,
      ...(settings.keyCache ? { keyCache: settings.keyCache } : {}),
      // Locally a rotator is a webhook on loopback (docs/rotation.md); no Lambda is ever called.
      rotators: { webhooks: new WebhookInvoker() },
    });
    const { app, audit, purger } = coffer;
    // Policy files edited while the server runs apply within 2 s; an invalid edit is refused.
    policyWatch = watchPolicyDir({
      dir: settings.policyDir,
      logger,
      initialHash: authorizer.policySetHash,
      apply: (next) => coffer.plane.replaceBase(next),
    });
    const auditTable = (settings.tables ?? DEFAULT_TABLES).audit;
    const checkpointer = new Checkpointer({
      client,
      table: auditTable,
      root: coffer.auditRoot,
      ...sink,
      // Signs the control records' generations: a rollback of one is visible to the verifier. A
      // fresh start has seen no record yet, so the newest verified checkpoint is its memory, as in
      // the checkpoint function: a record deleted or put back while the server was stopped is
      // refused, not signed over (which would also lift the floor of every later start).
      generations: async () =>
        checkedGenerations(
          await signedGenerations(client, auditTable, coffer.auditRoot, logger),
          await coffer.control.generations(),
        ),
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

    let rewrapping: Promise<void> | undefined;
    const purge = async () => {
      try {
        const purged = await purger.purgeExpired();
        if (purged > 0) logger.info('purged expired soft-deleted secrets', { purged });
      } catch (err) {
        logger.warn('purge failed', describeError(err));
      }
      // In the background, one tick at a time: a long pass never holds up the start or the purge.
      if (!rewrapping) {
        rewrapping = rewrap(coffer.keyAdmin, settings.rewrapEverySeconds, logger).finally(() => {
          rewrapping = undefined;
        });
      }
    };
    timer = setInterval(purge, PURGE_INTERVAL_MS);
    timer.unref();
    // Rotations that are due, one run at a time (a slow run is not overlapped by the next tick).
    let rotating = false;
    const rotate = async () => {
      if (rotating) return;
      rotating = true;
      try {
        const result = await coffer.service.rotateDue();
        if (result.rotated > 0 || result.failed > 0) logger.info('rotated due secrets', result);
      } catch (err) {
        logger.warn('rotation failed', describeError(err));
      } finally {
        rotating = false;
      }
    };
    rotationTimer = setInterval(rotate, hooks.rotationIntervalMs ?? ROTATION_INTERVAL_MS);
    rotationTimer.unref();
    const checkpoint = async () => {
      try {
        audit.sealed((await checkpointer.write()).heads);
      } catch (err) {
        logger.warn('audit checkpoint failed', describeError(err));
      }
    };
    aborted();
    checkpointTimer = setInterval(checkpoint, hooks.checkpointIntervalMs ?? CHECKPOINT_INTERVAL_MS);
    checkpointTimer.unref();

    const listening = await new Promise<ServerType>((resolve, reject) => {
      const s = serve(
        {
          fetch: app.fetch,
          hostname: '127.0.0.1',
          port: settings.port,
          ...(tls
            ? {
                createServer: createHttpsServer,
                serverOptions: { maxHeaderSize: MAX_HEADER_BYTES, ...tlsServerOptions(tls) },
              }
            : { serverOptions: { maxHeaderSize: MAX_HEADER_BYTES } }),
        },
        () => resolve(s),
      );
      s.once('error', (err) => reject(listenError(err, settings.port)));
    });
    server = listening;
    // The start's purge, due rotations and checkpoint run once the server answers: none of them
    // decides a request (an expired secret is not served, whether purged or not; the checkpoint
    // signs what is there), so none holds up the start. Each logs its own failure.
    const housekeeping = (async () => {
      await purge();
      await rotate();
      await checkpoint();
    })();
    const port = (listening.address() as AddressInfo).port;
    const endpointFile = join(settings.dataDir, DYNAMODB_ENDPOINT_FILE);
    await writeFile(endpointFile, `${endpoint}\n`, { mode: 0o600 });
    return {
      url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
      tokenFile,
      dynamodbEndpoint: endpoint,
      dynamodbPid: () => ddb?.pid,
      failed,
      stop: async () => {
        policyWatch?.close();
        if (timer) clearInterval(timer);
        if (checkpointTimer) clearInterval(checkpointTimer);
        if (rotationTimer) clearInterval(rotationTimer);
        await new Promise<void>((resolve) => listening.close(() => resolve()));
        await housekeeping;
        // Directory writes still on their way land before DynamoDB Local stops.
        await coffer.directory.flush();
        // The last checkpoint seals every record this server wrote.
        await checkpoint();
        await rm(endpointFile, { force: true });
        client.destroy();
        await ddb?.stop();
        lock.release();
        logger.close();
      },
    };
  } catch (err) {
    policyWatch?.close();
    if (timer) clearInterval(timer);
    if (checkpointTimer) clearInterval(checkpointTimer);
    if (rotationTimer) clearInterval(rotationTimer);
    server?.close();
    client.destroy();
    await ddb?.stop();
    lock.release();
    logger.close();
    throw err;
  }
}
