import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { InvalidArgumentError } from 'commander';
import type { CofferClient, SecretValue } from '../../../packages/client/src/index.js';
import { secretField, secretText } from '../../../packages/client/src/values.js';
import { listAll, readAll } from '../bundle.js';
import type { ClientFactory } from '../credentials.js';
import { PassThroughExit } from '../exit-codes.js';
import type { CliIo } from '../io.js';
import { folderPrefix, type Output } from '../output.js';
import { progressBar } from '../progress.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Signals passed on to the child while it runs: `coffer run` itself ignores them meanwhile. */
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'] as const;

/** The variable name for a path below a prefix: upper-cased, with `/`, `.` and `-` as `_`. */
export function envNameOf(relative: string): string {
  return relative.toUpperCase().replace(/[/.-]/g, '_');
}

/** `PATH` or `PATH#FIELD` (`#` is never part of a path): which secret, and which field of it. */
export function splitRef(ref: string): { path: string; field?: string } {
  const at = ref.indexOf('#');
  return at === -1 ? { path: ref } : { path: ref.slice(0, at), field: ref.slice(at + 1) };
}

/**
 * NAME -> path (or `PATH#FIELD`) for every secret asked for. Two secrets for one name are an error (naming both),
 * never a silent choice of one.
 */
export async function envPlan(
  client: CofferClient,
  prefixes: readonly string[],
  maps: readonly string[],
  warn: (text: string) => void = () => {},
): Promise<Map<string, string>> {
  const plan = new Map<string, string>();
  const add = (name: string, path: string, hint: string) => {
    if (!ENV_NAME.test(name)) {
      throw new InvalidArgumentError(
        `"${name.slice(0, 80)}" (from ${path}) is not a valid variable name${hint}`,
      );
    }
    const taken = plan.get(name);
    if (taken !== undefined && taken !== path) {
      throw new InvalidArgumentError(
        `${name} would be set from both ${taken} and ${path}; name one of them with --map NAME=PATH`,
      );
    }
    plan.set(name, path);
  };
  for (const raw of prefixes) {
    const prefix = folderPrefix(raw);
    const paths = await listAll(client, prefix);
    if (paths.length === 0) warn(`coffer: warning: no secrets you may list below "${prefix}"\n`);
    for (const path of paths) {
      add(envNameOf(path.slice(prefix.length)), path, '; give it one with --map NAME=PATH');
    }
  }
  for (const pair of maps) {
    const at = pair.indexOf('=');
    if (at <= 0 || at === pair.length - 1) {
      throw new InvalidArgumentError(`--map "${pair.slice(0, 80)}" must be NAME=PATH or NAME=PATH#FIELD`);
    }
    const ref = splitRef(pair.slice(at + 1));
    if (ref.path === '' || ref.field === '') {
      throw new InvalidArgumentError(`--map "${pair.slice(0, 80)}" must be NAME=PATH or NAME=PATH#FIELD`);
    }
    add(pair.slice(0, at), pair.slice(at + 1), '');
  }
  return plan;
}

/** True when the CLI runs as this very process (not in-process from a test or another program). */
const ownsProcess = (io: CliIo) => io.stdout === process.stdout && io.stdin === process.stdin;

async function runChild(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const [command, ...args] = argv as [string, ...string[]];
  const direct = ownsProcess(io);
  const child = spawn(command, args, {
    env,
    cwd: io.cwd,
    stdio: direct ? 'inherit' : ['pipe', 'pipe', 'pipe'],
  });
  if (!direct) {
    child.stdout?.on('data', (chunk: Buffer) => io.stdout.write(chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => io.stderr.write(chunk.toString()));
    child.stdin?.on('error', () => {});
    io.stdin.pipe(child.stdin as NodeJS.WritableStream);
  }
  const forward = (signal: NodeJS.Signals) => {
    child.kill(signal);
  };
  for (const s of FORWARDED) process.on(s, forward);
  try {
    const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
      (resolve, reject) => {
        child.once('error', reject);
        child.once('close', (code, signal) => resolve({ code, signal }));
      },
    ).catch((err: NodeJS.ErrnoException) => {
      // The shell's conventions: 127 command not found, 126 found but not runnable.
      io.stderr.write(`coffer: cannot run ${command.slice(0, 200)}: ${err.code ?? 'error'}\n`);
      return { code: err.code === 'ENOENT' ? 127 : 126, signal: null };
    });
    if (signal) {
      const number = constants.signals[signal] ?? 0;
      if (direct) {
        for (const s of FORWARDED) process.off(s, forward);
        // Die of the same signal so that the parent (a shell, a supervisor) sees what the child did.
        process.kill(process.pid, signal);
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      return 128 + number;
    }
    return code ?? 1;
  } finally {
    for (const s of FORWARDED) process.off(s, forward);
    if (!direct) {
      // A piped stdin left flowing would keep an embedding process alive after the child is gone.
      io.stdin.unpipe(child.stdin as NodeJS.WritableStream);
      io.stdin.pause();
    }
  }
}

/**
 * `coffer run`: starts a command with secrets as environment variables. The values go from the
 * server's answer into the child's environment and nowhere else: no file, no argument, no log.
 * The child's exit code passes through; if a signal killed it, `coffer run` dies of the same
 * signal (or, when it cannot, exits 128 + the signal's number, as shells report it).
 */
export async function runWithSecrets(
  io: CliIo,
  out: Output,
  client: ClientFactory,
  argv: string[],
  opts: { prefix?: string[]; map?: string[] },
): Promise<void> {
  const c = await client();
  const plan = await envPlan(c, opts.prefix ?? [], opts.map ?? [], out.note);
  const paths = [...new Set([...plan.values()].map((ref) => splitRef(ref).path))];
  const values = await readAll(c, paths, progressBar(io, 'reading', paths.length, false));
  const env: NodeJS.ProcessEnv = { ...io.env };
  // The child gets the secrets it was given, not the caller's Coffer credentials.
  delete env.COFFER_TOKEN;
  // Every variable is worked out before the child starts: a binary secret (no text to put in a
  // variable) or a missing field stops the run with nothing started.
  for (const [name, ref] of plan) {
    const { path, field } = splitRef(ref);
    const secret = values.get(path) as SecretValue;
    env[name] = field === undefined ? secretText(secret) : secretField(secret, field);
  }
  values.clear();
  c.clearCache();
  const code = await runChild(argv, env, io);
  if (code !== 0) throw new PassThroughExit(code);
}
