import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { decodeJwt } from 'jose';
import { parseEndpoint } from '../../packages/client/src/endpoint.js';
import { type CofferClient, CofferClientError, createClient } from '../../packages/client/src/index.js';
import { DEV_ISSUER, DevIssuer } from '../authn/dev-issuer.js';
import { DEFAULT_ADDR, localSettings } from '../config.js';
import { isLoopbackUrl, loadConfig } from '../config-file.js';
import { CofferError } from '../errors.js';
import { type LocalServer, startLocalServer } from '../local/server.js';
import { jsonLogger } from '../log.js';
import { PACKAGE_JSON } from '../package-root.js';
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

/** The token the CLI sent and where it came from, to explain a refusal. */
interface SentToken {
  readonly value: string;
  readonly source: string;
  /** The token is the local data dir's dev-token. */
  readonly devToken?: boolean;
}

/** What the commands of one CLI run share with the error printer. */
export interface CliSession {
  token?: SentToken;
  endpoint?: string;
  /** The requests were signed with AWS credentials (COFFER_AUTH=iam). */
  iam?: boolean;
}

/** No token anywhere: said before any request is made. */
class NoTokenError extends CofferError {
  static override readonly code = 'unauthenticated';
}

/**
 * The token the CLI sends: `COFFER_TOKEN`, else the login cache (see `coffer login`), else the
 * local data dir's dev token, which is only ever sent to a loopback server (it belongs to the
 * local server; a remote one would refuse it anyway, and need not see it).
 */
async function resolveToken(io: CliIo, endpoint: string, url: URL): Promise<SentToken | undefined> {
  if (io.env.COFFER_TOKEN?.trim()) return { value: io.env.COFFER_TOKEN.trim(), source: 'COFFER_TOKEN' };
  const cached = await loginCacheToken(io.env, endpoint);
  if (cached) return { value: cached, source: 'the coffer login cache' };
  if (!isLoopbackUrl(url)) return undefined;
  const file = join(localSettings(io.env, io.cwd).dataDir, 'dev-token');
  try {
    const value = (await readFile(file, 'utf8')).trim();
    return value ? { value, source: file, devToken: true } : undefined;
  } catch {
    return undefined;
  }
}

/** Why the server refused the token, as far as the CLI can tell without trusting it. */
function refusedTokenMessage(token: SentToken): string {
  let exp: number | undefined;
  try {
    const claims = decodeJwt(token.value);
    exp = typeof claims.exp === 'number' ? claims.exp : undefined;
  } catch {
    return `the server refused the token from ${token.source}: it is not a JWT`;
  }
  if (exp !== undefined && exp * 1000 <= Date.now()) {
    return `the token from ${token.source} expired at ${new Date(exp * 1000).toISOString()}: mint a new one with "coffer token", or run "coffer login"`;
  }
  if (token.devToken) {
    return `the server refused the token from ${token.source}: is COFFER_ADDR the server of that data dir?`;
  }
  return `the server refused the token from ${token.source} (not issued by an issuer it trusts, or for another server)`;
}

export function buildProgram(io: CliIo, session: CliSession = {}): Command {
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
  /** A confirmation (put, rm…): left out by --quiet. */
  const print = (human: string, json: unknown) => {
    if (globals().json) out(`${JSON.stringify(json, null, 2)}\n`);
    else if (!globals().quiet || human === '') out(human);
  };
  /** What the command was asked to show (ls, history, whoami): printed even with --quiet. */
  const show = (human: string, json: unknown) => {
    if (globals().json) out(`${JSON.stringify(json, null, 2)}\n`);
    else out(human);
  };
  const client = async (): Promise<CofferClient> => {
    const endpoint = io.env.COFFER_ADDR || DEFAULT_ADDR;
    session.endpoint = endpoint;
    const auth = (io.env.COFFER_AUTH ?? '').trim().toLowerCase();
    if (auth === 'iam') {
      // An AWS workload (EC2, ECS, Lambda, CodeBuild…): SigV4 with the default credential chain on
      // /iam/v1, so it needs only its role. The region comes from the execute-api host name, else
      // from AWS_REGION / AWS_DEFAULT_REGION.
      session.iam = true;
      const region = io.env.AWS_REGION || io.env.AWS_DEFAULT_REGION;
      return createClient({ endpoint, auth: { iam: region ? { region } : {} } });
    }
    if (auth !== '' && auth !== 'token') {
      throw new InvalidArgumentError('COFFER_AUTH must be "token" (the default) or "iam"');
    }
    // A malformed COFFER_ADDR is the problem to report, before any token is looked for.
    const url = parseEndpoint(endpoint);
    const token = await resolveToken(io, endpoint, url);
    if (!token) {
      throw new NoTokenError(
        isLoopbackUrl(url)
          ? `no token: set COFFER_TOKEN, run "coffer login", or start the local server (npm start), which writes ${join(localSettings(io.env, io.cwd).dataDir, 'dev-token')}`
          : `no token: set COFFER_TOKEN, run "coffer login" (the local dev-token is only sent to a server on this machine)`,
      );
    }
    session.token = token;
    return createClient({ endpoint, auth: { token: token.value } });
  };

  program
    .command('server')
    .description('run the local server (DynamoDB Local, local keys, dev issuer) on 127.0.0.1')
    .option('--dev', 'development mode (the only mode of the local server)')
    .action(async () => {
      const settings = localSettings(io.env, io.cwd);
      const config = await loadConfig(io.env, io.cwd);
      // Signals are taken from the start: a Ctrl-C or SIGTERM while DynamoDB Local is starting
      // aborts the start and stops what was started, rather than leave Java running.
      const abort = new AbortController();
      let server: LocalServer | undefined;
      let stopping = false;
      let stopped: () => void = () => {};
      const done = new Promise<void>((resolve) => {
        stopped = resolve;
      });
      const stop = () => {
        if (stopping) return;
        stopping = true;
        io.stderr.write('Stopping Coffer…\n');
        if (server) server.stop().then(stopped, stopped);
        else abort.abort();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      // `kill <pid of npm start>` ends npm without passing the signal on: when the parent goes
      // away, stop as if signalled rather than leave the server and DynamoDB Local running.
      const parent = process.ppid;
      const watch = setInterval(() => {
        if (process.ppid !== parent) stop();
      }, 1000);
      watch.unref();
      try {
        server = await startLocalServer(
          settings,
          jsonLogger((l) => io.stderr.write(`${l}\n`)),
          config,
          { auditSink: (line) => io.stdout.write(`${line}\n`), signal: abort.signal },
        );
      } catch (err) {
        if (abort.signal.aborted) return;
        throw err;
      } finally {
        if (!server) {
          clearInterval(watch);
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        }
      }
      if (stopping) {
        // A signal came while the start was finishing.
        await server.stop();
        return;
      }
      io.stderr.write(`Coffer listening on ${server.url}\n`);
      const issuers = [`dev (${DEV_ISSUER})`, ...config.issuers.map((i) => `${i.alias} (${i.issuer})`)];
      io.stderr.write(`Token issuers: ${issuers.join(', ')}\n`);
      io.stderr.write(`Admin token: ${server.tokenFile}\n`);
      // The variables the CLI needs to find this server and its token, when not the defaults.
      const vars = [
        ...(server.url !== DEFAULT_ADDR ? [`COFFER_ADDR=${server.url}`] : []),
        ...(settings.dataDir !== localSettings({}, io.cwd).dataDir
          ? [`COFFER_DATA_DIR=${shellQuote(settings.dataDir)}`]
          : []),
      ];
      io.stderr.write(
        `Try: printf 's3cret' | ${[...vars, 'npm run coffer -- put hello/world -'].join(' ')}\n`,
      );
      await done;
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
      show(human, { items, ...(opts.recursive ? {} : { folders }) });
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
      show(`${lines.join('\n')}\n`, meta);
    });

  program
    .command('whoami')
    .description('the principal as the server sees it')
    .action(async () => {
      const me = await (await client()).whoami();
      const attributes = Object.entries(me.attributes).map(([k, v]) => `${k}=${v}`);
      show(
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
      const issuer = await DevIssuer.open(localSettings(io.env, io.cwd).dataDir, { create: false });
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

/** Quotes a word for a POSIX shell when it needs it. */
function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * With --json, command-line errors too are one JSON line on stderr (`usage`, exit 2), without
 * the help text that follows them for people.
 */
function jsonUsageErrors(program: Command, io: CliIo): void {
  const walk = (cmd: Command) => {
    cmd.showHelpAfterError(false);
    cmd.configureOutput({
      ...cmd.configureOutput(),
      outputError: (text) => {
        const message = text.replace(/^error: /, '').trim();
        io.stderr.write(`${JSON.stringify({ error: { code: 'usage', message } })}\n`);
      },
    });
    for (const sub of cmd.commands) walk(sub);
  };
  walk(program);
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
  // Only as the first word: `get PATH --version N` is a secret's version, not coffer's.
  if (argv[0] === '--version' || argv[0] === '-V' || (argv[0] === '--json' && argv[1] === '--version')) {
    const { version } = JSON.parse(await readFile(PACKAGE_JSON, 'utf8')) as {
      version: string;
    };
    io.stdout.write(argv[0] === '--json' ? `${JSON.stringify({ version })}\n` : `coffer ${version}\n`);
    return EXIT.ok;
  }
  const session: CliSession = {};
  const program = buildProgram(io, session);
  const dashes = argv.indexOf('--');
  if ((dashes === -1 ? argv : argv.slice(0, dashes)).includes('--json')) jsonUsageErrors(program, io);
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof PassThroughExit) return err.exitCode;
    // Thrown by an action (commander prints its own parse errors, and those are new CommanderErrors);
    // checked first because InvalidArgumentError is itself a CommanderError.
    if (err instanceof InvalidArgumentError) {
      if (program.opts<{ json?: boolean }>().json) {
        io.stderr.write(`${JSON.stringify({ error: { code: 'usage', message: err.message } })}\n`);
      } else {
        io.stderr.write(`coffer: ${err.message}\n`);
      }
      return EXIT.usage;
    }
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) {
        return EXIT.ok;
      }
      return EXIT.usage;
    }
    const json = program.opts<{ json?: boolean }>().json;
    let code = err instanceof CofferClientError || err instanceof CofferError ? err.code : 'internal';
    let message =
      err instanceof CofferClientError || err instanceof CofferError ? err.message : 'unexpected error';
    if (err instanceof CofferClientError && err.code === 'unauthenticated' && session.token) {
      message = refusedTokenMessage(session.token);
    } else if (err instanceof CofferClientError && err.code === 'unauthenticated' && session.iam) {
      message =
        'the request was signed with AWS credentials (COFFER_AUTH=iam) and refused: is COFFER_ADDR the API Gateway endpoint, and may this role call its /iam/v1 routes?';
    } else if (err instanceof CofferClientError && err.code === 'unreachable') {
      message = `${message}: is it running? Start it with "npm start", or set COFFER_ADDR`;
    } else if (
      err instanceof CofferClientError &&
      err.code === 'not_found' &&
      err.message === 'no such route'
    ) {
      // The server has no such route at all: COFFER_ADDR points below or beside the API's base.
      message = `${session.endpoint ?? 'the server'} has no Coffer API here: set COFFER_ADDR to the server's base address, like ${DEFAULT_ADDR}`;
      code = 'invalid_config';
    } else if (
      err instanceof CofferClientError &&
      err.code === 'invalid_config' &&
      /endpoint/.test(err.message)
    ) {
      message = `COFFER_ADDR must be an http(s) URL, like ${DEFAULT_ADDR}`;
    }
    if (json) io.stderr.write(`${JSON.stringify({ error: { code, message } })}\n`);
    else io.stderr.write(`coffer: ${message}${code !== 'internal' ? ` (${code})` : ''}\n`);
    if (!(err instanceof CofferClientError || err instanceof CofferError)) {
      io.stderr.write(`coffer: ${(err as Error)?.name ?? 'Error'}\n`);
    }
    return exitCodeOf(code);
  }
}
