import { type Command, InvalidArgumentError, Option } from 'commander';
import type { SourceOptions, TrustOptions } from '../actions/audit.js';
import type { StorageOptions } from '../actions/audit-storage.js';
import type { CliIo } from '../io.js';

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

const positive = (name: string, max: number) => (raw: string) => {
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) {
    throw new InvalidArgumentError(`${name} must be an integer from 1 to ${max}`);
  }
  return Number(raw);
};

const sourceOptions = (cmd: Command) =>
  cmd
    .option(
      '--table <name>',
      'an audit table in DynamoDB (your AWS credentials and region) instead of the local one',
    )
    .option('--endpoint <url>', 'DynamoDB endpoint (DynamoDB Local, or a running local server)')
    .option('--region <region>', 'AWS region of --table, --kms-key-id and --against-logs');

/**
 * `coffer audit …`: verify, export, tail and query the audit log. The verifier, the AWS clients
 * and DynamoDB Local are loaded by the action that runs, never by the rest of the CLI.
 */
export function registerAuditCommands(program: Command, io: CliIo): void {
  const json = () => program.opts<{ json?: boolean }>().json === true;
  const quiet = () => program.opts<{ quiet?: boolean }>().quiet === true;
  const actions = () => import('../actions/audit.js');
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
    .option(
      '--against-logs <log-group>',
      "also compare the table with the records' CloudWatch Logs copy in this log group (catches a tail deleted before the next checkpoint)",
    )
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
    .option('--storage', 'also compare the live heads and control records of the secrets table with the log')
    .option('--secrets-table <name>', 'the secrets table for --storage (default: the local one)')
    .option(
      '--storage-mac-key-id <arn>',
      "the AWS deployment's storage HMAC KMS key for --storage (default: the local data dir's key)",
    )
    .option(
      '--installation-id <id>',
      "the installation id heads are bound to (default: the data dir's, else the secrets table name)",
    )
    .action(
      async (
        opts: SourceOptions &
          TrustOptions &
          StorageOptions & { file?: string; maxCheckpointAge?: number; againstLogs?: string },
      ) => {
        await (await actions()).verifyAuditLog(io, opts, { json: json(), quiet: quiet() });
      },
    );

  sourceOptions(
    audit.command('export').description('write the whole log as JSON lines (for verify --file, archives)'),
  )
    .option('--out <file>', 'write to this file (default: stdout)')
    .action(async (opts: SourceOptions & { out?: string }) => {
      await (await actions()).exportAuditLog(io, opts);
    });

  sourceOptions(audit.command('tail').description('the newest request records'))
    .option('-n, --lines <n>', 'how many', positive('--lines', 10_000), 20)
    .action(async (opts: SourceOptions & { lines: number }) => {
      await (await actions()).tailAuditLog(io, opts, json());
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
        const filter = {
          since,
          limit: opts.limit,
          ...(until !== undefined ? { until } : {}),
          ...(opts.principal !== undefined ? { principal: principalId(opts.principal) } : {}),
          ...(opts.path !== undefined ? { path: opts.path } : {}),
          ...(opts.decision !== undefined ? { decision: opts.decision } : {}),
          ...(opts.action !== undefined ? { action: opts.action } : {}),
        };
        await (await actions()).queryAuditLog(io, opts, filter, json());
      },
    );
}
