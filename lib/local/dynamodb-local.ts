import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { localDynamoClient } from '../store/dynamo-client.js';
import {
  type SpawnedDynamoDbLocal,
  type SpawnOptions,
  spawnDynamoDbLocal,
} from './dynamodb-local-process.js';

export { assertJava, dynamoDbLocalDir, freePort } from './dynamodb-local-process.js';

export interface DynamoDbLocalOptions extends SpawnOptions {
  /** Aborts the start: the process is killed and the start rejects. */
  readonly signal?: AbortSignal;
}

export interface DynamoDbLocal {
  readonly endpoint: string;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 120_000;
/**
 * How often a starting DynamoDB Local is asked whether it answers. A refused connection costs next
 * to nothing, and every step of this interval is added to `npm start` on average by half.
 */
const POLL_MS = 25;

/** Starts DynamoDB Local as a child process on loopback and waits until it answers. */
export async function startDynamoDbLocal(options: DynamoDbLocalOptions = {}): Promise<DynamoDbLocal> {
  return waitForDynamoDbLocal(await spawnDynamoDbLocal(options), options.signal);
}

/**
 * Waits until a spawned DynamoDB Local answers a request. A start that fails (it exits, the
 * signal aborts, or it does not answer in time) kills it and rejects.
 */
export async function waitForDynamoDbLocal(
  spawned: SpawnedDynamoDbLocal,
  signal?: AbortSignal,
): Promise<DynamoDbLocal> {
  const { endpoint, pidFile, process: child } = spawned;
  // One attempt per poll: the SDK's own retries of a refused connection would add their backoff.
  const client = localDynamoClient(endpoint, { maxAttempts: 1 });
  // Java starts in a few seconds on an idle machine; a busy one (CI, parallel test runs) may take
  // far longer, and giving up early would only leave the user to try again.
  const deadline = Date.now() + START_TIMEOUT_MS;
  try {
    for (;;) {
      if (signal?.aborted) throw new Error('DynamoDB Local start aborted');
      if (spawned.exited()) {
        throw new Error(
          `DynamoDB Local exited at start: ${spawned.output().trim().split('\n').slice(-3).join(' | ')}`,
        );
      }
      try {
        await client.send(new ListTablesCommand({ Limit: 1 }));
        break;
      } catch {
        if (Date.now() > deadline)
          throw new Error(`DynamoDB Local did not start within ${START_TIMEOUT_MS / 1000} s`);
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    }
  } catch (err) {
    spawned.kill();
    throw err;
  } finally {
    client.destroy();
  }
  spawned.quiet();

  return {
    endpoint,
    process: child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (spawned.exited()) {
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
