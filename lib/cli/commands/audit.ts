import { createPublicKey, type KeyObject } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { access, readFile, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { GetPublicKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { AuditReader } from '../../audit/reader.js';
import { logLine, type RequestRecord } from '../../audit/record.js';
import { exportLines, queryRecords, tailRecords } from '../../audit/review.js';
import {
  type Problem,
  type VerifierOptions,
  type VerifyReport,
  verifyLines,
  verifyTable,
} from '../../audit/verifier.js';
import { DEFAULT_TABLES, localSettings } from '../../config.js';
import { CofferError } from '../../errors.js';
import { type DynamoDbLocal, startDynamoDbLocal } from '../../local/dynamodb-local.js';
import { DYNAMODB_ENDPOINT_FILE } from '../../local/server.js';
import { localDynamoClient } from '../../store/dynamo-client.js';
import type { CliIo } from '../main.js';

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

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * Turns an AWS SDK failure while reading `what` into an error that says what went wrong in words
 * (the SDK's own messages may name files and roles; only the fact is kept).
 */
export function auditSourceError(err: unknown, what: string): unknown {
  if (err instanceof CofferError || err instanceof InvalidArgumentError) return err;
  const e = err as { name?: string; code?: string; errors?: { code?: string }[] } | undefined;
  const name = e?.name ?? '';
  const code = e?.code ?? e?.errors?.find((x) => x.code)?.code ?? '';
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
  if (NETWORK_CODES.has(code) || name === 'TimeoutError' || name === 'RequestTimeout')
    return new AuditSourceUnreachable(`cannot reach ${what}`);
  if (name === 'KMSInvalidStateException' || name === 'DisabledException')
    return new AuditSourceUnreachable(`${what} is disabled or not usable`);
  return new AuditSourceUnreachable(`cannot read ${what} (${name || 'error'})`);
}

interface SourceOptions {
  table?: string;
  endpoint?: string;
  region?: string;
}

interface TrustOptions {
  rootKey?: string[];
  kmsKeyId?: string;
}

/** The audit table to read, and how to close whatever was opened for it. */
interface TableSource {
  readonly reader: AuditReader;
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

function summary(report: VerifyReport, source: string, trust: string): string {
  const lines = [
    `Audit log:   ${source}`,
    `Trust root:  ${trust}`,
    `Verified:    ${report.chains} chains, ${report.records} records, ${report.checkpoints} checkpoints`,
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
    lines.push('OK: every certificate, signature, link, sequence number and checkpoint holds.');
  } else {
    lines.push(`FAILED: ${report.problemCount} problem${report.problemCount === 1 ? '' : 's'}.`);
    for (const p of report.problems.slice(0, 20)) lines.push(`  ${describeProblem(p)}`);
    if (report.problemCount > 20) lines.push(`  … and ${report.problemCount - 20} more`);
  }
  return `${lines.join('\n')}\n`;
}

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400, w: 7 * 86_400 } as const;

/**
 * Parses `--since` / `--until`: a duration back from now (`90s`, `30m`, `24h`, `7d`, `2w`), or an
 * ISO 8601 date or time (`2025-03-01`, `2025-03-01T12:00:00Z`; without a zone, local time).
 */
export function parseSince(raw: string, now: Date = new Date(), name = '--since'): string {
  const text = raw.trim();
  const m = /^(\d{1,9})([smhdw])$/.exec(text);
  if (m) {
    const unit = UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS];
    return new Date(now.getTime() - Number(m[1]) * unit * 1000).toISOString();
  }
  // Only ISO forms: Date.parse alone would read "5" as May 2001.
  const iso = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/i;
  const t = iso.test(text) ? Date.parse(text) : Number.NaN;
  if (!Number.isFinite(t)) {
    throw new InvalidArgumentError(
      `${name} must be a duration back from now (30m, 24h, 7d, 2w) or an ISO 8601 date or time (2025-03-01, 2025-03-01T12:00:00Z), got "${text.slice(0, 40)}"`,
    );
  }
  return new Date(t).toISOString();
}

/** `User::"corp:alice"`, `Coffer::User::"corp:alice"` and `corp:alice` all name principal id `corp:alice` (likewise Role and Workload). */
export function principalId(raw: string): string {
  const m = /^(?:Coffer::)?(?:User|Role|Workload)::(.*)$/.exec(raw.trim());
  const id = m ? (m[1] as string) : raw.trim();
  return id.length >= 2 && id.startsWith('"') && id.endsWith('"') ? id.slice(1, -1) : id;
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

const positive = (name: string, max: number) => (raw: string) => {
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) {
    throw new InvalidArgumentError(`${name} must be an integer from 1 to ${max}`);
  }
  return Number(raw);
};

function humanLine(r: RequestRecord): string {
  const who = r.principal ? `${r.principal.type}::${r.principal.id}` : '-';
  const what = `${r.action ?? r.method}${r.path !== null ? ` ${r.path}` : ''}${r.version !== null ? ` v${r.version}` : ''}`;
  return `${r.time}  ${String(r.status).padEnd(3)} ${(r.decision ?? '-').padEnd(5)} ${what}  ${who}  ${r.sourceIp}  req=${r.requestId}${r.error ? `  ${r.error}` : ''}`;
}

const sourceOptions = (cmd: Command) =>
  cmd
    .option(
      '--table <name>',
      'an audit table in DynamoDB (your AWS credentials and region) instead of the local one',
    )
    .option('--endpoint <url>', 'DynamoDB endpoint (DynamoDB Local, or a running local server)')
    .option('--region <region>', 'AWS region of --table and --kms-key-id');

/** `coffer audit …`: verify, export, tail and query the audit log. */
export function registerAuditCommands(program: Command, io: CliIo): void {
  const json = () => program.opts<{ json?: boolean }>().json === true;
  const quiet = () => program.opts<{ quiet?: boolean }>().quiet === true;
  const audit = program.command('audit').description('verify and review the signed audit log');

  sourceOptions(
    audit
      .command('verify')
      .description(
        'check every certificate, signature, link, sequence number and checkpoint against a root key given out of band',
      ),
  )
    .option('--file <path>', 'a JSON-lines export (coffer audit export) instead of a table')
    .option('--root-key <file...>', 'trusted root public key (PEM); repeat for keys used before a rotation')
    .option('--kms-key-id <id>', "trust the public key of this KMS key (the AWS deployment's audit key)")
    .addOption(
      new Option(
        '--max-checkpoint-age <duration>',
        'fail when the newest checkpoint is older (e.g. 30m)',
      ).argParser((raw) => {
        const m = /^(\d{1,9})([smhdw])$/.exec(raw.trim());
        if (!m || Number(m[1]) === 0) {
          throw new InvalidArgumentError('--max-checkpoint-age must look like 90s, 30m, 2h or 1d');
        }
        return Number(m[1]) * UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS] * 1000;
      }),
    )
    .action(async (opts: SourceOptions & TrustOptions & { file?: string; maxCheckpointAge?: number }) => {
      if (opts.file && opts.table) throw new InvalidArgumentError('give either --file or --table');
      const trust = await trustedKeys(io, opts);
      const showProgress = !json() && !quiet();
      let report: VerifyReport;
      let source: string;
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
          const bar = progress(io, await table.reader.approximateItemCount(), showProgress);
          try {
            report = await verifyTable(
              table.reader,
              verifierOptions(trust.keys, opts, (n) => bar.tick(n)),
            );
          } catch (err) {
            throw auditSourceError(err, table.describe);
          } finally {
            bar.end();
          }
          source = table.describe;
        } finally {
          await table.close();
        }
      }
      if (json())
        io.stdout.write(
          `${JSON.stringify({ source, trust: trust.from, ...report, heads: undefined }, null, 2)}\n`,
        );
      else io.stdout.write(summary(report, source, trust.from));
      const first = report.problems[0];
      if (first) throw new AuditVerificationFailed(`audit verification failed: ${describeProblem(first)}`);
    });

  sourceOptions(
    audit.command('export').description('write the whole log as JSON lines (for verify --file, archives)'),
  )
    .option('--out <file>', 'write to this file (default: stdout)')
    .action(async (opts: SourceOptions & { out?: string }) => {
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
    });

  sourceOptions(audit.command('tail').description('the newest request records'))
    .option('-n, --lines <n>', 'how many', positive('--lines', 10_000), 20)
    .action(async (opts: SourceOptions & { lines: number }) => {
      const table = await openTable(io, opts);
      try {
        const records = await tailRecords(table.reader, opts.lines).catch((err: unknown) => {
          throw auditSourceError(err, table.describe);
        });
        printRecords(records);
      } finally {
        await table.close();
      }
    });

  sourceOptions(audit.command('query').description('request records by principal, path, time and decision'))
    .option(
      '--principal <id>',
      'principal id, e.g. dev:alice, User::dev:alice or arn:aws:iam::123456789012:role/app',
    )
    .option('--path <prefix>', 'secret path or prefix')
    .option('--since <when>', 'ISO 8601 date/time, or a duration back from now (30m, 24h, 7d, 2w)', '24h')
    .option('--until <when>', 'ISO 8601 date/time, or a duration back from now')
    .addOption(new Option('--decision <decision>', 'allow or deny').choices(['allow', 'deny']))
    .option('--action <action>', 'read, write, list, …')
    .option('--limit <n>', 'at most this many (the newest)', positive('--limit', 100_000), 100)
    .action(
      async (
        opts: SourceOptions & {
          principal?: string;
          path?: string;
          since: string;
          until?: string;
          decision?: 'allow' | 'deny';
          action?: string;
          limit: number;
        },
      ) => {
        const now = new Date();
        const since = parseSince(opts.since, now);
        const until = opts.until !== undefined ? parseSince(opts.until, now, '--until') : undefined;
        if (until !== undefined && until < since) {
          throw new InvalidArgumentError(`--until (${until}) is before --since (${since})`);
        }
        const table = await openTable(io, opts);
        try {
          const records = await queryRecords(table.reader, {
            since,
            limit: opts.limit,
            ...(until !== undefined ? { until } : {}),
            ...(opts.principal !== undefined ? { principal: principalId(opts.principal) } : {}),
            ...(opts.path !== undefined ? { path: opts.path } : {}),
            ...(opts.decision !== undefined ? { decision: opts.decision } : {}),
            ...(opts.action !== undefined ? { action: opts.action } : {}),
          }).catch((err: unknown) => {
            throw auditSourceError(err, table.describe);
          });
          printRecords(records);
        } finally {
          await table.close();
        }
      },
    );

  function printRecords(records: readonly RequestRecord[]): void {
    for (const r of records) io.stdout.write(`${json() ? JSON.stringify(logLine(r)) : humanLine(r)}\n`);
  }
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
