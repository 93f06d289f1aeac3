import { createServer } from 'node:net';
import { join } from 'node:path';
import type { LocalSettings } from '../config.js';
import { ConfigError } from '../errors.js';
import { type SpawnedDynamoDbLocal, spawnDynamoDbLocal } from './dynamodb-local-process.js';
import { type DataDirLock, lockDataDir } from './lock.js';

/*
 * The first steps of the local server, importing nothing heavier than Node's own modules: the
 * data-dir lock, the port check and the spawn of DynamoDB Local. `coffer server` runs them before
 * it imports the server (the AWS SDK, Cedar's wasm, the app: about a second), so that the JVM,
 * the longest step of `npm start`, starts at once and loads while they do.
 */

/** What the start took before the server module was loaded; the server takes it over. */
export interface LocalPrestart {
  readonly lock: DataDirLock;
  /** The spawned DynamoDB Local (none with COFFER_DYNAMODB_ENDPOINT). */
  readonly dynamodb: SpawnedDynamoDbLocal | undefined;
  /** Kills the spawned Java and frees the data dir: a start that failed before the server ran. */
  release(): void;
}

/** A listen failure as one line: the usual one is a port already taken by another program. */
export function listenError(err: unknown, port: number): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'EADDRINUSE') {
    return new ConfigError(
      `port ${port} on 127.0.0.1 is already in use (another Coffer server?): stop it, or set COFFER_PORT to a free port`,
    );
  }
  if (code === 'EACCES') {
    return new ConfigError(
      `port ${port} on 127.0.0.1 needs privileges: set COFFER_PORT to a port above 1023`,
    );
  }
  return err;
}

/** Fails early when the API port is taken (port 0 means any free port and is always free). */
async function assertPortFree(port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err) => reject(listenError(err, port)));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
  });
}

/**
 * Locks the data dir, checks the port and spawns DynamoDB Local, in that order: a second server on
 * the same data dir must not touch the first one's engine, and a busy port is reported before a
 * Java start. On failure nothing is left held.
 */
export async function prestartLocal(settings: LocalSettings): Promise<LocalPrestart> {
  const lock = lockDataDir(settings.dataDir);
  let dynamodb: SpawnedDynamoDbLocal | undefined;
  try {
    await assertPortFree(settings.port);
    if (!settings.dynamodbEndpoint) {
      dynamodb = await spawnDynamoDbLocal({
        dbPath: join(settings.dataDir, 'dynamodb'),
        ownProcessGroup: true,
        quickStart: true,
      });
    }
  } catch (err) {
    lock.release();
    throw err;
  }
  return {
    lock,
    dynamodb,
    release: () => {
      if (dynamodb && !dynamodb.exited()) dynamodb.kill();
      lock.release();
    },
  };
}
