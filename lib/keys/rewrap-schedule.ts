import type { KeyAdmin } from './key-admin.js';
import type { RewrapCursor } from './rewrap.js';

/** The local server's and the scheduled function's default: a new re-wrap pass every week. */
export const DEFAULT_REWRAP_EVERY_SECONDS = 7 * 86_400;

export interface ScheduledRewrap {
  /** `started` a new pass, `continued` an unfinished one, `idle` when none was due. */
  readonly ran: 'started' | 'continued' | 'idle';
  readonly cursor?: RewrapCursor;
  /** Branch key versions whose retention ended and whose material was destroyed. */
  readonly destroyed: readonly string[];
}

/**
 * One tick of the re-wrap schedule (the local server's timer; the scheduled function, run often
 * with a time budget): continues an unfinished pass, or starts a new one when the last finished
 * `everySeconds` ago or more, and destroys retired key material whose retention has ended. A pass
 * longer than one run's budget goes on at the next tick from its saved cursor.
 */
export async function rewrapTick(
  admin: KeyAdmin,
  options: { everySeconds: number; budgetMs: number; now?: () => number },
): Promise<ScheduledRewrap> {
  const now = options.now ?? Date.now;
  const destroyed = await admin.destroyExpired();
  const last = await admin.job.cursor();
  if (last && !last.done) {
    const cursor = await admin.job.run({ resumeOnly: true, budgetMs: options.budgetMs });
    return { ran: 'continued', ...(cursor ? { cursor } : {}), destroyed };
  }
  const finished = last?.finishedAt ? Date.parse(last.finishedAt) : Number.NEGATIVE_INFINITY;
  if (options.everySeconds <= 0 || now() - finished < options.everySeconds * 1000) {
    return { ran: 'idle', destroyed };
  }
  const cursor = await admin.job.run({ budgetMs: options.budgetMs });
  return { ran: 'started', ...(cursor ? { cursor } : {}), destroyed };
}
