import { createPublicKey, type KeyObject } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { access, readFile, rm } from 'node:fs/promises';
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
      if (running) endpoint = running;
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
    try {
      keys.push(createPublicKey(pem));
    } catch {
      throw new InvalidArgumentError(`${file} is not a PEM public key`);
    }
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

/** A progress line on stderr, only when stderr is a terminal. */
function progress(io: CliIo, total: number | undefined): { tick(done: number): void; end(): void } {
  if (!io.stderr.isTTY) return { tick() {}, end() {} };
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
      ? `Newest checkpoint: #${report.lastCheckpoint.seq} at ${report.lastCheckpoint.time}`
      : 'Newest checkpoint: none',
    `Not yet under a checkpoint: ${report.unsealedRecords} records`,
  ];
  if (report.ok) {
    lines.push('OK: every certificate, signature, link, sequence number and checkpoint holds.');
  } else {
    lines.push(`FAILED: ${report.problemCount} problem${report.problemCount === 1 ? '' : 's'}.`);
    for (const p of report.problems.slice(0, 20)) lines.push(`  ${describeProblem(p)}`);
    if (report.problemCount > 20) lines.push(`  … and ${report.problemCount - 20} more`);
  }
  return `${lines.join('\n')}\n`;
}

/** Parses `--since`: an ISO 8601 time, or a duration back from now (`90m`, `24h`, `7d`). */
export function parseSince(raw: string, now: Date = new Date()): string {
  const m = /^(\d+)([smhd])$/.exec(raw.trim());
  if (m) {
    const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now.getTime() - Number(m[1]) * unit * 1000).toISOString();
  }
  const t = Date.parse(raw);
  if (!Number.isFinite(t))
    throw new InvalidArgumentError('--since must be an ISO time or a duration like 30m, 24h, 7d');
  return new Date(t).toISOString();
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
        const m = /^(\d+)([smhd])$/.exec(raw);
        if (!m) throw new InvalidArgumentError('--max-checkpoint-age must look like 90s, 30m, 2h or 1d');
        return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as 's' | 'm' | 'h' | 'd'] * 1000;
      }),
    )
    .action(async (opts: SourceOptions & TrustOptions & { file?: string; maxCheckpointAge?: number }) => {
      if (opts.file && opts.table) throw new InvalidArgumentError('give either --file or --table');
      const trust = await trustedKeys(io, opts);
      let report: VerifyReport;
      let source: string;
      if (opts.file) {
        const path = resolve(io.cwd, opts.file);
        if (!(await exists(path))) throw new InvalidArgumentError(`no such file ${opts.file}`);
        const lines = async function* () {
          const rl = createInterface({
            input: createReadStream(path, 'utf8'),
            crlfDelay: Number.POSITIVE_INFINITY,
          });
          for await (const line of rl) yield line;
        };
        // Counting lines costs a read of the file: only for a progress bar someone watches.
        let total = 0;
        if (io.stderr.isTTY) for await (const _ of lines()) total++;
        const bar = progress(io, total || undefined);
        report = await verifyLines(
          lines,
          verifierOptions(trust.keys, opts, (n) => bar.tick(n)),
        );
        bar.end();
        source = path;
      } else {
        const table = await openTable(io, opts);
        try {
          const bar = progress(io, await table.reader.approximateItemCount());
          report = await verifyTable(
            table.reader,
            verifierOptions(trust.keys, opts, (n) => bar.tick(n)),
          );
          bar.end();
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
      const table = await openTable(io, opts);
      const path = opts.out ? resolve(io.cwd, opts.out) : undefined;
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
        throw err;
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
        const records = await tailRecords(table.reader, opts.lines);
        printRecords(records);
      } finally {
        await table.close();
      }
    });

  sourceOptions(audit.command('query').description('request records by principal, path, time and decision'))
    .option('--principal <id>', 'principal id, e.g. dev:alice or arn:aws:iam::123456789012:role/app')
    .option('--path <prefix>', 'secret path or prefix')
    .option('--since <when>', 'ISO time or duration back from now (30m, 24h, 7d)', '24h')
    .option('--until <when>', 'ISO time')
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
        const since = parseSince(opts.since);
        const until = opts.until !== undefined ? parseSince(opts.until) : undefined;
        const table = await openTable(io, opts);
        try {
          const records = await queryRecords(table.reader, {
            since,
            limit: opts.limit,
            ...(until !== undefined ? { until } : {}),
            ...(opts.principal !== undefined ? { principal: opts.principal } : {}),
            ...(opts.path !== undefined ? { path: opts.path } : {}),
            ...(opts.decision !== undefined ? { decision: opts.decision } : {}),
            ...(opts.action !== undefined ? { action: opts.action } : {}),
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
