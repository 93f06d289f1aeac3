import { createPublicKey, type KeyObject } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { access, readFile, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetPublicKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { InvalidArgumentError } from 'commander';
import { isNetworkError } from '../../../packages/client/src/failures.js';
import { AUDIT_RECORD_FILTER_PATTERN, LogsComparer, type LogsComparison } from '../../audit/logs-compare.js';
import { AuditReader } from '../../audit/reader.js';
import { logLine, type RequestRecord } from '../../audit/record.js';
import { exportLines, queryRecords, type RecordFilter, tailRecords } from '../../audit/review.js';
import type { VerifierOptions, VerifyReport } from '../../audit/verifier.js';
import { type Problem, ProblemLog } from '../../audit/verify-problems.js';
import { verifyLines, verifyTable } from '../../audit/verify-sources.js';
import { DEFAULT_TABLES, localSettings } from '../../config.js';
import { CofferError } from '../../errors.js';
import { type DynamoDbLocal, startDynamoDbLocal } from '../../local/dynamodb-local.js';
import { DYNAMODB_ENDPOINT_FILE } from '../../local/server.js';
import { localDynamoClient } from '../../store/dynamo-client.js';
import type { CliIo } from '../io.js';
import type { StorageOptions, StorageResult } from './audit-storage.js';

/** `coffer audit verify` found a problem: the log was altered, or is incomplete. */
export class AuditVerificationFailed extends CofferError {
  static override readonly code = 'audit_verification_failed';
}

/** DynamoDB or KMS cannot be reached, or failed. */
export class AuditSourceUnreachable extends CofferError {
  static override readonly code = 'unreachable';
}

/** The audit table or KMS key named on the command line does not exist. */
export class AuditSourceNotFound extends CofferError {
  static override readonly code = 'not_found';
}

/** AWS refused the caller: no permission on the table or key. */
export class AuditSourceForbidden extends CofferError {
  static override readonly code = 'forbidden';
}

/** No AWS credentials to read the table or the KMS key with. */
export class AwsCredentialsUnavailable extends CofferError {
  static override readonly code = 'credentials_unavailable';
}

/**
 * Turns an AWS SDK failure while reading `what` into an error that says what went wrong in words
 * (the SDK's own messages may name files and roles; only the fact is kept).
 */
export function auditSourceError(err: unknown, what: string): unknown {
  if (err instanceof CofferError || err instanceof InvalidArgumentError) return err;
  const name = (err as { name?: string } | undefined)?.name ?? '';
  if (
    name === 'CredentialsProviderError' ||
    name === 'UnrecognizedClientException' ||
    name === 'InvalidSignatureException'
  )
    return new AwsCredentialsUnavailable(
      `no valid AWS credentials to read ${what} (set AWS_PROFILE or AWS credentials, or use --endpoint for DynamoDB Local)`,
    );
  if (name === 'ResourceNotFoundException' || name === 'NotFoundException')
    return new AuditSourceNotFound(`${what} does not exist`);
  if (name === 'AccessDeniedException' || name === 'AccessDenied')
    return new AuditSourceForbidden(`AWS refused access to ${what}`);
  if (isNetworkError(err) || name === 'TimeoutError' || name === 'RequestTimeout')
    return new AuditSourceUnreachable(`cannot reach ${what}`);
  if (name === 'KMSInvalidStateException' || name === 'DisabledException')
    return new AuditSourceUnreachable(`${what} is disabled or not usable`);
  return new AuditSourceUnreachable(`cannot read ${what} (${name || 'error'})`);
}

/** Where the audit log is read from: `--table`, `--endpoint`, `--region`. */
export interface SourceOptions {
  table?: string;
  endpoint?: string;
  region?: string;
}

/** The trust roots named on the command line: `--root-key`, `--kms-key-id`. */
export interface TrustOptions {
  rootKey?: string[];
  kmsKeyId?: string;
}

/** The audit table to read, and how to close whatever was opened for it. */
interface TableSource {
  readonly reader: AuditReader;
  /** The DynamoDB client the reader uses: `--storage` reads the secrets table through it. */
  readonly client: DynamoDBClient;
  readonly describe: string;
  close(): Promise<void>;
}

const isLoopback = (endpoint: string) => {
  try {
    return ['127.0.0.1', 'localhost', '[::1]'].includes(new URL(endpoint).hostname);
  } catch {
    return false;
  }
};

/** True if something accepts TCP connections at the endpoint's host and port (within a second). */
function listening(endpoint: string): Promise<boolean> {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((done) => {
    const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 80) });
    const finish = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(1000, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The table named on the command line (DynamoDB in the caller's AWS account and region, or
 * `--endpoint`), or else the local data dir's: through the running local server's DynamoDB Local
 * if there is one, else a DynamoDB Local started on the data dir for the time of the command.
 */
async function openTable(io: CliIo, opts: SourceOptions): Promise<TableSource> {
  if (opts.table) {
    const endpoint = opts.endpoint;
    const client =
      endpoint && isLoopback(endpoint)
        ? localDynamoClient(endpoint)
        : new DynamoDBClient({
            ...(opts.region ? { region: opts.region } : {}),
            ...(endpoint ? { endpoint } : {}),
          });
    return {
      reader: new AuditReader(client, opts.table),
      client,
      describe: `table ${opts.table}${endpoint ? ` at ${endpoint}` : ''}`,
      close: async () => client.destroy(),
    };
  }
  const settings = localSettings(io.env, io.cwd);
  let endpoint = opts.endpoint ?? settings.dynamodbEndpoint;
  if (!endpoint) {
    try {
      const running = (await readFile(join(settings.dataDir, DYNAMODB_ENDPOINT_FILE), 'utf8')).trim();
      // A server that died without cleaning up leaves the file behind: use it only if it answers.
      if (running && (await listening(running))) endpoint = running;
    } catch {
      // No local server running.
    }
  }
  let ddb: DynamoDbLocal | undefined;
  if (!endpoint) {
    const dbPath = join(settings.dataDir, 'dynamodb');
    if (!(await exists(dbPath))) {
      throw new InvalidArgumentError(
        `no local audit log in ${settings.dataDir} (start the server once, or use --table / --file)`,
      );
    }
    ddb = await startDynamoDbLocal({ dbPath });
    endpoint = ddb.endpoint;
  }
  const client = localDynamoClient(endpoint);
  return {
    reader: new AuditReader(client, DEFAULT_TABLES.audit),
    client,
    describe: `local table ${DEFAULT_TABLES.audit} (${settings.dataDir})`,
    close: async () => {
      client.destroy();
      await ddb?.stop();
    },
  };
}

/**
 * The root public keys to trust, from out of band only: PEM files, the KMS key's public key, or
 * the local data dir's audit root key. Never a key read from the audit table.
 */
async function trustedKeys(
  io: CliIo,
  opts: TrustOptions & SourceOptions,
): Promise<{ keys: KeyObject[]; from: string }> {
  const keys: KeyObject[] = [];
  const from: string[] = [];
  for (const file of opts.rootKey ?? []) {
    const path = resolve(io.cwd, file);
    let pem: string;
    try {
      pem = await readFile(path, 'utf8');
    } catch {
      throw new InvalidArgumentError(`cannot read the root key file ${file}`);
    }
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch {
      throw new InvalidArgumentError(`${file} is not a PEM public key`);
    }
    if (!isRootKeyType(key)) {
      throw new InvalidArgumentError(
        `${file} is not an audit root key: expected an Ed25519 (local) or EC P-256 (KMS) public key`,
      );
    }
    keys.push(key);
    from.push(path);
  }
  if (opts.kmsKeyId) {
    const kms = new KMSClient(opts.region ? { region: opts.region } : {});
    try {
      const out = await kms.send(new GetPublicKeyCommand({ KeyId: opts.kmsKeyId }));
      if (!out.PublicKey || out.KeyUsage !== 'SIGN_VERIFY') {
        throw new InvalidArgumentError(`KMS key ${opts.kmsKeyId} is not a signing key`);
      }
      keys.push(createPublicKey({ key: Buffer.from(out.PublicKey), format: 'der', type: 'spki' }));
      from.push(`KMS ${out.KeyId ?? opts.kmsKeyId}`);
    } catch (err) {
      throw auditSourceError(err, `KMS key ${opts.kmsKeyId}`);
    } finally {
      kms.destroy();
    }
  }
  if (keys.length === 0) {
    const { dataDir } = localSettings(io.env, io.cwd);
    const path = join(dataDir, 'keys', 'audit-root.pub.pem');
    let pem: string;
    try {
      pem = await readFile(path, 'utf8');
    } catch {
      throw new InvalidArgumentError(
        `no trust root: give --root-key FILE or --kms-key-id ID (${path} not found)`,
      );
    }
    keys.push(createPublicKey(pem));
    from.push(path);
  }
  return { keys, from: from.join(', ') };
}

const isRootKeyType = (key: KeyObject) =>
  key.asymmetricKeyType === 'ed25519' ||
  (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1');

/**
 * A progress line on stderr, only for a person watching: both stdout and stderr are terminals and
 * neither --json nor --quiet is set, so pipes, files and scripts never see control characters.
 */
function progress(
  io: CliIo,
  total: number | undefined,
  enabled: boolean,
): { tick(done: number): void; end(): void } {
  if (!enabled || !io.stderr.isTTY || !io.stdout.isTTY) return { tick() {}, end() {} };
  let shown = false;
  return {
    tick(done) {
      shown = true;
      if (total && total > 0) {
        const fraction = Math.min(1, done / total);
        const width = 30;
        const filled = Math.round(fraction * width);
        io.stderr.write(
          `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}% ${done}/${total} items`,
        );
      } else {
        io.stderr.write(`\r${done} items verified`);
      }
    },
    end() {
      if (shown) io.stderr.write('\r\x1b[K');
    },
  };
}

function describeProblem(p: Problem): string {
  const where = [
    p.chain !== undefined ? `chain ${p.chain}` : undefined,
    p.seq !== undefined ? `record ${p.seq}` : undefined,
    p.checkpoint !== undefined ? `checkpoint ${p.checkpoint}` : undefined,
    p.requestId !== undefined ? `request ${p.requestId}` : undefined,
  ]
    .filter(Boolean)
    .join(', ');
  return `${p.kind}${where ? ` (${where})` : ''}: ${p.message}`;
}

function summary(report: VerifyReport, source: string, trust: string, logs?: LogsSummary): string {
  const lines = [
    `Audit log:   ${source}`,
    `Trust root:  ${trust}`,
    `Verified:    ${report.chains} chains, ${report.records} records, ${report.checkpoints} checkpoints`,
    ...(logs
      ? [
          `Against logs: ${logs.logGroup}: ${logs.logRecords} record lines, ${logs.matched} records matched`,
          ...(logs.notInLogs > 0
            ? [
                `Note: ${logs.notInLogs} records of the table have no line in the logs yet (delivery lag, or older`,
                "      than the log group's retention): not a failure.",
              ]
            : []),
        ]
      : []),
    report.lastCheckpoint
      ? `Newest checkpoint: #${report.lastCheckpoint.seq} ${report.lastCheckpoint.time ? `at ${report.lastCheckpoint.time}` : '(time unknown: no trusted signature)'}`
      : 'Newest checkpoint: none',
    `Not yet under a checkpoint: ${report.unsealedRecords} records`,
  ];
  if (report.checkpoints === 0 && report.records > 0) {
    lines.push(
      'Warning: no checkpoint. Nothing proves that no record was removed from the end of a chain, or',
      '         that no whole chain was removed. (--max-checkpoint-age makes this a failure.)',
    );
  } else if (report.unsealedRecords > 0) {
    lines.push(
      `Note: ${report.unsealedRecords} records come after the newest checkpoint: checked, but not yet sealed by one`,
      "      (see 'Limits' in docs/audit.md).",
    );
  }
  if (report.ok) {
    lines.push(
      logs
        ? 'OK: every certificate, signature, link, sequence number and checkpoint holds, and every record in the logs is in the table.'
        : 'OK: every certificate, signature, link, sequence number and checkpoint holds.',
    );
  } else {
    lines.push(`FAILED: ${report.problemCount} problem${report.problemCount === 1 ? '' : 's'}.`);
    for (const p of report.problems.slice(0, 20)) lines.push(`  ${describeProblem(p)}`);
    if (report.problemCount > 20) lines.push(`  … and ${report.problemCount - 20} more`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Refuses, with a reason, a file that is not an export: missing, a directory, empty, or the
 * server's stdout copy (its flat lines carry no certificate or full record, so they cannot be
 * verified; `coffer audit export` writes the records as stored).
 */
async function checkExportFile(path: string, given: string): Promise<void> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch {
    throw new InvalidArgumentError(`no such file ${given}`);
  }
  if (!info.isFile()) throw new InvalidArgumentError(`${given} is not a file`);
  const rl = createInterface({ input: createReadStream(path, 'utf8'), crlfDelay: Number.POSITIVE_INFINITY });
  let seen = 0;
  try {
    for await (const line of rl) {
      if (line.trim() === '') continue;
      seen++;
      let item: unknown;
      try {
        item = JSON.parse(line);
      } catch {
        item = undefined;
      }
      if (item && typeof item === 'object' && (item as { audit?: unknown }).audit === 'coffer.v1') {
        throw new InvalidArgumentError(
          `${given} holds the server's stdout (CloudWatch) copy of the audit log, which cannot be verified on its own: verify the table, or a file written by \`coffer audit export --out FILE\``,
        );
      }
      if (seen >= 20) break;
    }
  } finally {
    rl.close();
  }
  if (seen === 0) throw new InvalidArgumentError(`${given} is empty: nothing to verify`);
}

function humanLine(r: RequestRecord): string {
  const who = r.principal ? `${r.principal.type}::${r.principal.id}` : '-';
  const what = `${r.action ?? r.method}${r.path !== null ? ` ${r.path}` : ''}${r.version !== null ? ` v${r.version}` : ''}`;
  return `${r.time}  ${String(r.status).padEnd(3)} ${(r.decision ?? '-').padEnd(5)} ${what}  ${who}  ${r.sourceIp}  req=${r.requestId}${r.error ? `  ${r.error}` : ''}`;
}

/** What `--against-logs` found, for the summary and the JSON report. */
interface LogsSummary extends LogsComparison {
  readonly logGroup: string;
}

/**
 * Feeds every audit record line of a log group to the comparer: FilterLogEvents over all its
 * streams, page by page. The SDK is imported here, so that only `verify --against-logs` loads it.
 */
async function readLogGroup(
  logGroup: string,
  region: string | undefined,
  comparer: LogsComparer,
): Promise<void> {
  const { CloudWatchLogsClient, FilterLogEventsCommand } = await import('@aws-sdk/client-cloudwatch-logs');
  const logs = new CloudWatchLogsClient(region ? { region } : {});
  try {
    let nextToken: string | undefined;
    do {
      const page = await logs.send(
        new FilterLogEventsCommand({
          logGroupName: logGroup,
          filterPattern: AUDIT_RECORD_FILTER_PATTERN,
          ...(nextToken !== undefined ? { nextToken } : {}),
        }),
      );
      for (const event of page.events ?? []) {
        if (event.message !== undefined) comparer.addLogMessage(event.message);
      }
      nextToken = page.nextToken;
    } while (nextToken);
  } catch (err) {
    throw auditSourceError(err, `log group ${logGroup}`);
  } finally {
    logs.destroy();
  }
}

/**
 * The verifier's report with the comparison's problems after its own (the verifier's first
 * problem stays the one to look at; a tail removed cleanly leaves the verifier with none).
 */
function withLogProblems(report: VerifyReport, found: ProblemLog): VerifyReport {
  if (found.count === 0) return report;
  return {
    ...report,
    ok: false,
    problems: [...report.problems, ...found.problems].slice(0, MAX_PROBLEMS),
    problemCount: report.problemCount + found.count,
  };
}

const MAX_PROBLEMS = 100;

/** `coffer audit verify`: the whole log against trust roots given out of band; fails on any problem. */
export async function verifyAuditLog(
  io: CliIo,
  opts: SourceOptions &
    TrustOptions &
    StorageOptions & { file?: string; maxCheckpointAge?: number; againstLogs?: string },
  flags: { json: boolean; quiet: boolean },
): Promise<void> {
  if (opts.file && opts.table) throw new InvalidArgumentError('give either --file or --table');
  if (opts.file && opts.againstLogs !== undefined) {
    throw new InvalidArgumentError('--against-logs compares a table with its logs: give --table, not --file');
  }
  if (opts.file && opts.storage)
    throw new InvalidArgumentError('--storage compares live heads with a table: give --table, not --file');
  let storage: StorageResult | undefined;
  const trust = await trustedKeys(io, opts);
  const showProgress = !flags.json && !flags.quiet;
  let report: VerifyReport;
  let source: string;
  let logs: LogsSummary | undefined;
  if (opts.file) {
    const path = resolve(io.cwd, opts.file);
    await checkExportFile(path, opts.file);
    const lines = async function* () {
      const rl = createInterface({
        input: createReadStream(path, 'utf8'),
        crlfDelay: Number.POSITIVE_INFINITY,
      });
      for await (const line of rl) yield line;
    };
    // Counting lines costs a read of the file: only for a progress bar someone watches.
    let total = 0;
    if (showProgress && io.stderr.isTTY && io.stdout.isTTY) for await (const _ of lines()) total++;
    const bar = progress(io, total || undefined, showProgress);
    report = await verifyLines(
      lines,
      verifierOptions(trust.keys, opts, (n) => bar.tick(n)),
    );
    bar.end();
    source = path;
  } else {
    const table = await openTable(io, opts);
    try {
      const found = new ProblemLog(MAX_PROBLEMS);
      const comparer = opts.againstLogs !== undefined ? new LogsComparer(found.report) : undefined;
      // The logs are read before the table: a record written in between is then in the table only
      // (lag), never in the logs only (which would read as a deletion).
      if (comparer && opts.againstLogs !== undefined)
        await readLogGroup(opts.againstLogs, opts.region, comparer);
      const bar = progress(io, await table.reader.approximateItemCount(), showProgress);
      try {
        report = await verifyTable(
          table.reader,
          verifierOptions(trust.keys, opts, (n) => bar.tick(n)),
          comparer
            ? (item, chain, keySeq) =>
                comparer.addStored({
                  chain,
                  // Where the record is stored (its sort key) is the position a log line must match.
                  seq: keySeq ?? Number(item.seq),
                  hash: typeof item.hash === 'string' ? item.hash : '',
                })
            : undefined,
        );
      } catch (err) {
        throw auditSourceError(err, table.describe);
      } finally {
        bar.end();
      }
      if (comparer && opts.againstLogs !== undefined) {
        logs = { logGroup: opts.againstLogs, ...comparer.finish() };
        report = withLogProblems(report, found);
      }
      source = table.describe;
      if (opts.storage) {
        const { verifyLiveStorage } = await import('./audit-storage.js');
        storage = await verifyLiveStorage(io, table.client, table.reader, opts).catch((err: unknown) => {
          throw auditSourceError(err, 'the secrets table or the storage MAC key');
        });
      }
    } finally {
      await table.close();
    }
  }
  if (flags.json)
    io.stdout.write(
      `${JSON.stringify({ source, trust: trust.from, ...report, heads: undefined, ...(logs ? { logs } : {}), storage }, null, 2)}\n`,
    );
  else {
    io.stdout.write(summary(report, source, trust.from, logs));
    if (storage) io.stdout.write((await import('./audit-storage.js')).storageSummary(storage));
  }
  const first = report.problems[0];
  if (first) throw new AuditVerificationFailed(`audit verification failed: ${describeProblem(first)}`);
  const firstStorage = storage?.problems[0];
  if (firstStorage) {
    const { describeStorageProblem } = await import('./audit-storage.js');
    throw new AuditVerificationFailed(`storage verification failed: ${describeStorageProblem(firstStorage)}`);
  }
}

/** `coffer audit export`: the records as stored, one JSON line each, to stdout or a new 0600 file. */
export async function exportAuditLog(io: CliIo, opts: SourceOptions & { out?: string }): Promise<void> {
  const path = opts.out ? resolve(io.cwd, opts.out) : undefined;
  if (path && (await exists(path))) {
    throw new InvalidArgumentError(`${opts.out} already exists (export never overwrites a file)`);
  }
  const table = await openTable(io, opts);
  const file = path ? createWriteStream(path, { flags: 'wx', mode: 0o600 }) : undefined;
  let n = 0;
  try {
    for await (const line of exportLines(table.reader)) {
      n++;
      if (file) {
        if (!file.write(`${line}\n`)) await new Promise<void>((r) => file.once('drain', () => r()));
      } else io.stdout.write(`${line}\n`);
    }
  } catch (err) {
    if (file && path) {
      file.destroy();
      await rm(path, { force: true });
    }
    throw auditSourceError(err, table.describe);
  } finally {
    await table.close();
  }
  if (file) {
    await new Promise<void>((done, fail) => file.end((err?: Error | null) => (err ? fail(err) : done())));
    io.stderr.write(`wrote ${n} lines to ${path}\n`);
  }
}

/** `coffer audit tail`: the newest request records. */
export async function tailAuditLog(
  io: CliIo,
  opts: SourceOptions & { lines: number },
  json: boolean,
): Promise<void> {
  const table = await openTable(io, opts);
  try {
    const records = await tailRecords(table.reader, opts.lines).catch((err: unknown) => {
      throw auditSourceError(err, table.describe);
    });
    printRecords(io, records, json);
  } finally {
    await table.close();
  }
}

/** `coffer audit query`: request records matching a filter whose times are already resolved. */
export async function queryAuditLog(
  io: CliIo,
  opts: SourceOptions,
  filter: RecordFilter,
  json: boolean,
): Promise<void> {
  const table = await openTable(io, opts);
  try {
    const records = await queryRecords(table.reader, filter).catch((err: unknown) => {
      throw auditSourceError(err, table.describe);
    });
    printRecords(io, records, json);
  } finally {
    await table.close();
  }
}

function printRecords(io: CliIo, records: readonly RequestRecord[], json: boolean): void {
  for (const r of records) io.stdout.write(`${json ? JSON.stringify(logLine(r)) : humanLine(r)}\n`);
}

function verifierOptions(
  keys: KeyObject[],
  opts: { maxCheckpointAge?: number },
  onProgress: (done: number) => void,
): VerifierOptions {
  return {
    rootKeys: keys,
    onProgress,
    ...(opts.maxCheckpointAge !== undefined
      ? { maxCheckpointAgeMs: opts.maxCheckpointAge, now: () => new Date() }
      : {}),
  };
}
