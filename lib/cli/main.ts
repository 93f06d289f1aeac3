import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { DEV_ISSUER, DevIssuer } from '../authn/dev-issuer.js';
import { type CofferClient, CofferClientError, createClient } from '../client/index.js';
import { DEFAULT_ADDR, localSettings } from '../config.js';
import { isLoopbackUrl, loadConfig } from '../config-file.js';
import { CofferError } from '../errors.js';
import { startLocalServer } from '../local/server.js';
import { jsonLogger } from '../log.js';
import { registerAuditCommands } from './commands/audit.js';
import { loginCacheToken } from './commands/auth-cache.js';
import { registerBackupCommands } from './commands/backup.js';
import { registerCompletionCommand } from './commands/completion.js';
import { registerExportCommand } from './commands/export.js';
import { registerImportCommand } from './commands/import.js';
import { registerKeygenCommand } from './commands/keygen.js';
import { registerLoginCommands } from './commands/login.js';
import { registerPolicyCommands } from './commands/policy.js';
import { registerRenderCommand } from './commands/render.js';
import { registerRunCommand } from './commands/run.js';
import { EXIT, exitCodeOf, PassThroughExit } from './exit-codes.js';
import { readSecretInput } from './input.js';

export interface CliIo {
  readonly env: NodeJS.ProcessEnv;
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly stdout: { write(s: string): unknown; isTTY?: boolean };
  readonly stderr: { write(s: string): unknown; isTTY?: boolean };
  readonly cwd: string;
}

const parseIntArg = (name: string, min: number, max: number) => (raw: string) => {
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
  }
  return Number(raw);
};

/** Parses `1h`, `30m`, `45s`, `2d` or plain seconds. */
export function parseDuration(raw: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(raw.trim());
  if (!m) throw new InvalidArgumentError('duration must look like 90s, 30m, 1h or 2d');
  const n = Number(m[1]);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  const seconds = n * unit;
  if (seconds < 1 || seconds > 30 * 86_400) throw new InvalidArgumentError('duration must be from 1s to 30d');
  return seconds;
}

/** Where the CLI's token came from, for the hint after a 401. */
export type TokenSource = 'COFFER_TOKEN' | 'login' | 'dev-token' | 'iam' | 'none';

/** What runCli learns from the commands it runs. */
interface RunState {
  tokenSource?: TokenSource;
  dataDir?: string;
}

function isLoopbackAddress(addr: string): boolean {
  try {
    return isLoopbackUrl(new URL(addr));
  } catch {
    return false;
  }
}

/**
 * The token the CLI sends: `COFFER_TOKEN`, else the login cache (see `coffer login`), else the
 * local data dir's dev token, which is only ever sent to a loopback server (it belongs to the
 * local server; a remote one would refuse it anyway, and need not see it).
 */
async function resolveToken(io: CliIo, state: RunState): Promise<string | undefined> {
  if (io.env.COFFER_TOKEN) {
    state.tokenSource = 'COFFER_TOKEN';
    return io.env.COFFER_TOKEN.trim();
  }
  const server = io.env.COFFER_ADDR || DEFAULT_ADDR;
  const cached = await loginCacheToken(io.env, server);
  if (cached) {
    state.tokenSource = 'login';
    return cached;
  }
  state.tokenSource = 'none';
  if (!isLoopbackAddress(server)) return undefined;
  const { dataDir } = localSettings(io.env, io.cwd);
  try {
    const token = (await readFile(join(dataDir, 'dev-token'), 'utf8')).trim();
    state.tokenSource = 'dev-token';
    state.dataDir = dataDir;
    return token;
  } catch {
    return undefined;
  }
}

/** One line after "authentication required" saying which token was refused, or that there was none. */
function unauthenticatedHint(state: RunState): string | undefined {
  switch (state.tokenSource) {
    case 'none':
      return 'no token was sent: run "coffer login", or set COFFER_TOKEN (for the local server, COFFER_DATA_DIR names the data dir holding dev-token)';
    case 'COFFER_TOKEN':
      return 'the server refused the token in COFFER_TOKEN (expired, or not from an issuer it trusts)';
    case 'login':
      return 'the server refused the token of "coffer login"; run "coffer login" again';
    case 'iam':
      return 'the request was signed with AWS credentials (COFFER_AUTH=iam); is COFFER_ADDR the API Gateway endpoint, and may this role call its /iam/v1 routes?';
    case 'dev-token':
      return `the server refused ${join(state.dataDir ?? '', 'dev-token')}; is COFFER_ADDR the server of that data dir?`;
    default:
      return undefined;
  }
}

export function buildProgram(io: CliIo, state: RunState = {}): Command {
  const out = (s: string) => io.stdout.write(s);
  const program = new Command('coffer');
  program
    .description('Coffer: secrets with envelope encryption, Cedar policies and a signed audit trail')
    .option('--json', 'machine-readable JSON output')
    .option('-q, --quiet', 'print nothing but requested values and errors')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });

  const globals = () => program.opts<{ json?: boolean; quiet?: boolean }>();
  const print = (human: string, json: unknown) => {
    if (globals().json) out(`${JSON.stringify(json, null, 2)}\n`);
    else if (!globals().quiet || human === '') out(human);
  };
  const client = async (): Promise<CofferClient> => {
    const endpoint = io.env.COFFER_ADDR || DEFAULT_ADDR;
    const auth = (io.env.COFFER_AUTH ?? '').trim().toLowerCase();
    if (auth === 'iam') {
      // An AWS workload (EC2, ECS, Lambda, CodeBuild…): SigV4 with the default credential chain on
      // /iam/v1, so it needs only its role. The region comes from the execute-api host name, else
      // from AWS_REGION / AWS_DEFAULT_REGION.
      state.tokenSource = 'iam';
      const region = io.env.AWS_REGION || io.env.AWS_DEFAULT_REGION;
      return createClient({ endpoint, auth: { iam: region ? { region } : {} } });
    }
    if (auth !== '' && auth !== 'token') {
      throw new InvalidArgumentError('COFFER_AUTH must be "token" (the default) or "iam"');
    }
    const token = await resolveToken(io, state);
    return createClient({ endpoint, auth: { token: token ?? '' } });
  };

  program
    .command('server')
    .description('run the local server (DynamoDB Local, local keys, dev issuer) on 127.0.0.1')
    .option('--dev', 'development mode (the only mode of the local server)')
    .action(async () => {
      const settings = localSettings(io.env, io.cwd);
      const config = await loadConfig(io.env, io.cwd);
      const server = await startLocalServer(
        settings,
        jsonLogger((l) => io.stderr.write(`${l}\n`)),
        config,
        { auditSink: (line) => io.stdout.write(`${line}\n`) },
      );
      io.stderr.write(`Coffer listening on ${server.url}\n`);
      const issuers = [`dev (${DEV_ISSUER})`, ...config.issuers.map((i) => `${i.alias} (${i.issuer})`)];
      io.stderr.write(`Token issuers: ${issuers.join(', ')}\n`);
      io.stderr.write(`Admin token: ${server.tokenFile}\n`);
      io.stderr.write(`Try: COFFER_ADDR=${server.url} npm run coffer -- put hello/world -\n`);
      await new Promise<void>((resolve) => {
        let stopping = false;
        const stop = () => {
          if (stopping) return;
          stopping = true;
          io.stderr.write('Stopping Coffer…\n');
          server.stop().then(resolve, resolve);
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        // `kill <pid of npm start>` ends npm without passing the signal on: when the parent goes
        // away, stop as if signalled rather than leave the server and DynamoDB Local running.
        const parent = process.ppid;
        setInterval(() => {
          if (process.ppid !== parent) stop();
        }, 1000).unref();
      });
    });

  program
    .command('put')
    .description('write a new version of a secret (value from the argument, stdin with "-", or a prompt)')
    .argument('<path>', 'secret path, e.g. team-a/db/password')
    .argument('[value]', 'the value, or "-" to read it from stdin (prefer stdin: arguments show in ps)')
    .option(
      '--cas <version>',
      'only write if the latest version is this (0 = only if absent)',
      parseIntArg('cas', 0, 2 ** 31),
    )
    .option('--description <text>', 'description of the secret')
    .option('--tag <key=value...>', 'tags (replace the current tags)')
    .action(
      async (
        path: string,
        value: string | undefined,
        opts: { cas?: number; description?: string; tag?: string[] },
      ) => {
        const secret = await readSecretInput(value, io);
        const tags = opts.tag ? parseTags(opts.tag) : undefined;
        const result = await (await client()).put(path, secret, {
          ...(opts.cas !== undefined ? { cas: opts.cas } : {}),
          ...(opts.description !== undefined ? { description: opts.description } : {}),
          ...(tags ? { tags } : {}),
        });
        print(`${result.path}: version ${result.version}\n`, result);
      },
    );

  program
    .command('get')
    .description('print a secret value')
    .argument('<path>', 'secret path')
    .option('--version <n>', 'a specific version', parseIntArg('version', 1, 2 ** 31))
    .action(async (path: string, opts: { version?: number }) => {
      const secret = await (await client()).get(
        path,
        opts.version !== undefined ? { version: opts.version } : {},
      );
      if (globals().json) out(`${JSON.stringify(secret, null, 2)}\n`);
      else out(io.stdout.isTTY ? `${secret.value}\n` : secret.value);
    });

  program
    .command('ls')
    .description('list secrets under a prefix (one level; -r for all)')
    .argument('[prefix]', 'path prefix, e.g. team-a/', '')
    .option('-r, --recursive', 'list every secret under the prefix')
    .action(async (prefix: string, opts: { recursive?: boolean }) => {
      const c = await client();
      const items: { path: string; version: number; updatedAt: string }[] = [];
      const folders: string[] = [];
      for await (const page of c.list(prefix, opts.recursive ? {} : { delimiter: '/' })) {
        items.push(...page.items);
        folders.push(...(page.folders ?? []));
      }
      const human = [...folders.map((f) => `${f}\n`), ...items.map((i) => `${i.path}\n`)].join('');
      print(human, { items, ...(opts.recursive ? {} : { folders }) });
    });

  program
    .command('rm')
    .description('soft-delete a secret (restorable during its recovery window)')
    .argument('<path>', 'secret path')
    .option(
      '--recovery-days <n>',
      'recovery window in days (7-30, default 7)',
      parseIntArg('recovery-days', 7, 30),
    )
    .action(async (path: string, opts: { recoveryDays?: number }) => {
      const result = await (await client()).delete(
        path,
        opts.recoveryDays !== undefined ? { recoveryDays: opts.recoveryDays } : {},
      );
      print(`${result.path}: deleted; restorable until ${result.purgeAt}\n`, result);
    });

  program
    .command('restore')
    .description('undo a soft delete within its recovery window')
    .argument('<path>', 'secret path')
    .action(async (path: string) => {
      const result = await (await client()).restore(path);
      print(`${result.path}: restored (version ${result.version})\n`, result);
    });

  program
    .command('destroy')
    .description('irreversibly erase versions of a secret')
    .argument('<path>', 'secret path')
    .requiredOption('--versions <list>', 'comma-separated versions, e.g. 1,2')
    .action(async (path: string, opts: { versions: string }) => {
      const versions = opts.versions.split(',').map((v) => parseIntArg('version', 1, 2 ** 31)(v.trim()));
      const result = await (await client()).destroy(path, versions);
      print(`${result.path}: destroyed ${result.destroyed.join(', ')}\n`, result);
    });

  program
    .command('history')
    .description('metadata and versions of a secret (no values)')
    .argument('<path>', 'secret path')
    .action(async (path: string) => {
      const meta = await (await client()).history(path);
      const lines = [
        `${meta.path}  current version ${meta.currentVersion}${meta.deletedAt ? `  (deleted; purge at ${meta.purgeAt})` : ''}`,
        ...(meta.description ? [`description: ${meta.description}`] : []),
        ...(Object.keys(meta.tags).length > 0
          ? [
              `tags: ${Object.entries(meta.tags)
                .map(([k, v]) => `${k}=${v}`)
                .join(' ')}`,
            ]
          : []),
        'VERSION  CREATED                   BY                    STATE',
        ...meta.versions.map(
          (v) =>
            `${String(v.version).padEnd(8)} ${v.createdAt.padEnd(25)} ${(v.createdBy ?? '').padEnd(21)} ${v.destroyed ? 'destroyed' : 'active'}`,
        ),
      ];
      print(`${lines.join('\n')}\n`, meta);
    });

  program
    .command('whoami')
    .description('the principal as the server sees it')
    .action(async () => {
      const me = await (await client()).whoami();
      const attributes = Object.entries(me.attributes).map(([k, v]) => `${k}=${v}`);
      print(
        `${me.entity}\ngroups: ${me.groups.join(', ') || '(none)'}\nauth: ${me.authMethod}\n` +
          (me.issuer ? `issuer: ${me.issuer}\n` : '') +
          (attributes.length > 0 ? `attributes: ${attributes.join(' ')}\n` : ''),
        me,
      );
    });

  program
    .command('token')
    .description("mint a token from the local data dir's dev issuer (prints the token alone)")
    .requiredOption('--sub <id>', 'subject')
    .option('--groups <list>', 'comma-separated groups', '')
    .addOption(
      new Option('--ttl <duration>', 'lifetime, e.g. 1h (default 1h, at most 30d)').argParser(parseDuration),
    )
    .action(async (opts: { sub: string; groups: string; ttl?: number }) => {
      if (!/^[A-Za-z0-9._@:-]{1,128}$/.test(opts.sub)) {
        throw new InvalidArgumentError('--sub must be 1-128 characters of A-Z a-z 0-9 . _ @ : -');
      }
      const groups = opts.groups
        .split(',')
        .map((g) => g.trim())
        .filter(Boolean);
      for (const g of groups) {
        if (!/^[A-Za-z0-9._-]{1,64}$/.test(g))
          throw new InvalidArgumentError(`invalid group name "${g.slice(0, 64)}"`);
      }
      const issuer = await DevIssuer.open(localSettings(io.env, io.cwd).dataDir);
      const token = await issuer.mint({ subject: opts.sub, groups, ttlSeconds: opts.ttl ?? 3600 });
      if (globals().json) out(`${JSON.stringify({ token })}\n`);
      else out(`${token}\n`);
    });

  registerLoginCommands(program, io);
  registerAuditCommands(program, io);
  registerPolicyCommands(program, io);
  registerRunCommand(program, io, client);
  registerRenderCommand(program, io, client);
  registerExportCommand(program, io, client);
  registerImportCommand(program, io, client);
  registerKeygenCommand(program, io);
  registerBackupCommands(program, io, client);
  registerCompletionCommand(program, io);

  return program;
}

function parseTags(pairs: readonly string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new InvalidArgumentError(`tag "${pair.slice(0, 64)}" must be key=value`);
    tags[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return tags;
}

/** Runs the CLI and returns its exit code. Errors print one line (or JSON with --json). */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const state: RunState = {};
  const program = buildProgram(io, state);
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof PassThroughExit) return err.exitCode;
    // Thrown by an action (commander prints its own parse errors, and those are new CommanderErrors);
    // checked first because InvalidArgumentError is itself a CommanderError.
    if (err instanceof InvalidArgumentError) {
      io.stderr.write(`coffer: ${err.message}\n`);
      return EXIT.usage;
    }
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) {
        return EXIT.ok;
      }
      return EXIT.usage;
    }
    const json = program.opts<{ json?: boolean }>().json;
    const code = err instanceof CofferClientError || err instanceof CofferError ? err.code : 'internal';
    const message =
      err instanceof CofferClientError || err instanceof CofferError ? err.message : 'unexpected error';
    if (json) io.stderr.write(`${JSON.stringify({ error: { code, message } })}\n`);
    else {
      io.stderr.write(`coffer: ${message}${code !== 'internal' ? ` (${code})` : ''}\n`);
      const hint = code === 'unauthenticated' ? unauthenticatedHint(state) : undefined;
      if (hint) io.stderr.write(`coffer: ${hint}\n`);
    }
    if (!(err instanceof CofferClientError || err instanceof CofferError)) {
      io.stderr.write(`coffer: ${(err as Error)?.name ?? 'Error'}\n`);
    }
    return exitCodeOf(code);
  }
}
