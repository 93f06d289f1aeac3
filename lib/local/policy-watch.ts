import { type FSWatcher, watch } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { CedarAuthorizer } from '../authz/cedar.js';
import { loadPolicyDir, POLICY_EXTENSION, PolicySetError, SCHEMA_FILE } from '../authz/policy-set.js';
import { describeError, type Logger } from '../log.js';

/** How long after the last change event the directory is read (editors write in several steps). */
const SETTLE_MS = 150;
/**
 * The directory is also compared on this interval, in case a change event is missed (network
 * file systems, some editors' rename dances): a change applies within 2 s either way.
 */
const POLL_MS = 700;

export interface PolicyWatchOptions {
  readonly dir: string;
  readonly logger: Logger;
  /** The hash of the set in force at start: an unchanged directory is not applied again. */
  readonly initialHash: string;
  /** Receives each new valid set. */
  readonly apply: (authorizer: CedarAuthorizer) => void;
}

export interface PolicyWatch {
  close(): void;
}

/** Names, sizes and modification times of the files a load reads: what a poll compares. */
async function signature(dir: string): Promise<string> {
  const names = (await readdir(dir)).filter((n) => n === SCHEMA_FILE || n.endsWith(POLICY_EXTENSION)).sort();
  const parts = await Promise.all(
    names.map(async (n) => {
      try {
        const s = await stat(join(dir, n));
        return `${n}:${s.size}:${s.mtimeMs}`;
      } catch {
        return `${n}:gone`;
      }
    }),
  );
  return parts.join('|');
}

/**
 * Watches the local server's policy directory and applies a changed set within 2 seconds. The
 * whole directory is loaded and validated again; an invalid set is refused with one log line and
 * the set in force stays (the server keeps serving). Only the local server watches: in AWS, sets
 * change by `coffer policy push`.
 */
export function watchPolicyDir(options: PolicyWatchOptions): PolicyWatch {
  const { dir, logger } = options;
  let hash = options.initialHash;
  let lastSignature: string | undefined;
  let closed = false;
  let settle: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;

  const reload = async (): Promise<void> => {
    try {
      lastSignature = await signature(dir).catch(() => undefined);
      const set = await loadPolicyDir(dir);
      if (closed || set.hash === hash) return;
      const authorizer = new CedarAuthorizer(set, { logger });
      options.apply(authorizer);
      hash = set.hash;
      logger.info('policy set reloaded', { dir, hash, policies: set.policies.length });
    } catch (err) {
      const first = err instanceof PolicySetError ? err.problems[0] : undefined;
      logger.error('policy change refused; the set in force stays', {
        dir,
        ...(first !== undefined ? { problem: first.slice(0, 300) } : describeError(err)),
      });
    }
  };

  const schedule = (delay: number) => {
    if (closed) return;
    if (settle) clearTimeout(settle);
    settle = setTimeout(() => {
      settle = undefined;
      if (running) {
        again = true;
        return;
      }
      running = reload().finally(() => {
        running = undefined;
        if (again) {
          again = false;
          schedule(0);
        }
      });
    }, delay);
    settle.unref();
  };

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dir, { persistent: false }, () => schedule(SETTLE_MS));
    watcher.on('error', (err) => logger.warn('policy directory watch failed; polling', describeError(err)));
  } catch (err) {
    logger.warn('policy directory cannot be watched; polling', describeError(err));
  }
  void signature(dir)
    .then((s) => {
      lastSignature ??= s;
    })
    .catch(() => {});
  const poll = setInterval(() => {
    if (running || settle) return;
    void signature(dir)
      .then((s) => {
        if (lastSignature !== undefined && s !== lastSignature) schedule(0);
        lastSignature ??= s;
      })
      .catch(() => {});
  }, POLL_MS);
  poll.unref();

  return {
    close() {
      closed = true;
      watcher?.close();
      clearInterval(poll);
      if (settle) clearTimeout(settle);
    },
  };
}
