import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../errors.js';

/** `<dataDir>/<this>` holds the pid of the local server that owns the data dir. */
export const LOCK_FILE = 'server.lock';

export interface DataDirLock {
  release(): void;
}

interface LockOwner {
  readonly pid: number;
}

function readOwner(file: string): LockOwner | undefined {
  try {
    const parsed = JSON.parse(readFileSync(file, 'utf8')) as { pid?: unknown };
    return typeof parsed.pid === 'number' && Number.isInteger(parsed.pid) && parsed.pid > 1
      ? { pid: parsed.pid }
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the pid still runs a Node process (a Coffer server). After a crash the pid may have been
 * reused by something else: a process that is not node does not hold the lock.
 */
function holds(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to another user, so it is not a server of ours to replace.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const ps = spawnSync('ps', ['-p', String(pid), '-o', 'command=']);
  if (ps.error || ps.status !== 0) return true;
  return /\bnode\b|coffer/i.test(ps.stdout.toString());
}

/**
 * Takes the data dir for this process, so that a second `npm start` on the same data dir stops with
 * one clear line instead of stopping the first server's DynamoDB Local and sharing its files. A
 * lock left by a server that died (SIGKILL, crash) is taken over.
 */
export function lockDataDir(dataDir: string): DataDirLock {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, `${JSON.stringify({ pid: process.pid })}\n`, { mode: 0o600, flag: 'wx' });
      return {
        release: () => {
          if (readOwner(file)?.pid === process.pid) rmSync(file, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = readOwner(file);
    if (owner && holds(owner.pid)) {
      throw new ConfigError(
        `another Coffer server (pid ${owner.pid}) is using the data dir ${dataDir}: stop it first, or set COFFER_DATA_DIR to another directory`,
      );
    }
    rmSync(file, { force: true });
  }
  throw new ConfigError(`cannot lock the data dir ${dataDir}: another server is starting with it`);
}
