import type { Logger } from '../log.js';
import type { DynamoDbLocal } from './dynamodb-local.js';

/** Restarts allowed within `windowMs` before the supervisor gives up. */
export const DEFAULT_MAX_RESTARTS = 3;
export const DEFAULT_RESTART_WINDOW_MS = 10 * 60_000;
/** The first restart waits this long, each further one within the window twice as long. */
export const DEFAULT_RESTART_BACKOFF_MS = 1_000;

export interface SupervisorOptions {
  /**
   * Starts one DynamoDB Local on `port` (omitted the first time: any free port). Restarts pass the
   * first instance's port, so that the server's client, which keeps its endpoint, reaches the new
   * one, and the same data directory, so that nothing written is lost.
   */
  readonly start: (port?: number) => Promise<DynamoDbLocal>;
  readonly logger: Logger;
  readonly maxRestarts?: number;
  readonly windowMs?: number;
  readonly backoffMs?: number;
  /** Called once when the supervisor gives up: the server must stop and exit non-zero. */
  readonly onGiveUp: (err: Error) => void;
  readonly now?: () => number;
}

/** DynamoDB Local exited more often than the supervisor restarts it: the server stops. */
export class DynamoDbLocalFailedError extends Error {
  override readonly name = 'DynamoDbLocalFailedError';
}

/**
 * Keeps the local server's DynamoDB Local running. When Java exits without being asked to (a crash,
 * an OOM kill, a stray `kill`), the supervisor logs one line saying so and starts it again on the
 * same port and data directory, after a growing pause. Meanwhile nothing listens on the port, so
 * requests fail fast with 503 `storage_unavailable` (a refused connection) rather than hang. After
 * `maxRestarts` restarts within `windowMs` it stops trying and calls `onGiveUp`: a server that
 * cannot keep its database is better stopped, with its lock released, than answering 503 forever.
 */
export class DynamoDbSupervisor {
  #current: DynamoDbLocal;
  #stopping = false;
  #restarts: number[] = [];
  #port: number;
  #pending: Promise<void> = Promise.resolve();
  readonly #options: SupervisorOptions;
  readonly #now: () => number;

  private constructor(first: DynamoDbLocal, options: SupervisorOptions) {
    this.#current = first;
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#port = Number(new URL(first.endpoint).port);
    this.#watch(first);
  }

  /** Starts the first instance (its failure rejects, as an unsupervised start would). */
  static async start(options: SupervisorOptions): Promise<DynamoDbSupervisor> {
    return new DynamoDbSupervisor(await options.start(), options);
  }

  get endpoint(): string {
    return this.#current.endpoint;
  }

  /** The running Java's pid (tests kill it to prove the restart). */
  get pid(): number | undefined {
    return this.#current.process.pid;
  }

  /** Resolves when the restart in progress (if any) has finished or given up. */
  settled(): Promise<void> {
    return this.#pending;
  }

  #watch(instance: DynamoDbLocal): void {
    instance.process.once('exit', (code, signal) => {
      if (this.#stopping || instance !== this.#current) return;
      this.#pending = this.#restart({ pid: instance.process.pid ?? null, code, signal });
    });
  }

  async #restart(exit: {
    pid: number | null;
    code: number | null;
    signal: NodeJS.Signals | null;
  }): Promise<void> {
    const max = this.#options.maxRestarts ?? DEFAULT_MAX_RESTARTS;
    const windowMs = this.#options.windowMs ?? DEFAULT_RESTART_WINDOW_MS;
    const exitFields = { pid: exit.pid, exitCode: exit.code, signal: exit.signal };
    for (;;) {
      const now = this.#now();
      this.#restarts = this.#restarts.filter((t) => now - t < windowMs);
      if (this.#restarts.length >= max) {
        this.#options.logger.error('DynamoDB Local keeps exiting; stopping the server', {
          ...exitFields,
          restarts: this.#restarts.length,
          windowSeconds: Math.round(windowMs / 1000),
        });
        this.#options.onGiveUp(
          new DynamoDbLocalFailedError(
            `DynamoDB Local exited ${max + 1} times within ${Math.round(windowMs / 1000)} s`,
          ),
        );
        return;
      }
      this.#restarts.push(now);
      const attempt = this.#restarts.length;
      const delayMs = (this.#options.backoffMs ?? DEFAULT_RESTART_BACKOFF_MS) * 2 ** (attempt - 1);
      this.#options.logger.error('DynamoDB Local exited; restarting it (requests get 503 meanwhile)', {
        ...exitFields,
        restart: attempt,
        maxRestarts: max,
        delayMs,
      });
      await new Promise((r) => setTimeout(r, delayMs));
      if (this.#stopping) return;
      try {
        const next = await this.#options.start(this.#port);
        if (this.#stopping) {
          await next.stop();
          return;
        }
        this.#current = next;
        this.#watch(next);
        this.#options.logger.info('DynamoDB Local restarted', {
          pid: next.process.pid ?? null,
          restart: attempt,
        });
        return;
      } catch (err) {
        // A restart that fails counts as another exit: the bound still holds.
        this.#options.logger.error('DynamoDB Local restart failed', {
          restart: attempt,
          errorName: err instanceof Error ? err.name : typeof err,
        });
      }
    }
  }

  /** Stops supervising, then the current instance. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#pending;
    await this.#current.stop();
  }
}
