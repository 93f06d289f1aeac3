import { isTransient } from './errors.js';

/** Cache settings of the client. Every duration is in milliseconds. */
export interface CacheOptions {
  /** How long a value is served without asking the server. Default 5 minutes (like the Lambda extension). */
  readonly ttlMs?: number;
  /** At most this many values are kept; the least recently used goes first. Default 1000. */
  readonly maxEntries?: number;
  /**
   * A value read within this window before its expiry is refreshed in the background, and so is
   * one that was read since its last fetch when the window opens. Default a fifth of the TTL.
   */
  readonly refreshAheadMs?: number;
  /**
   * While the server cannot be reached (network errors, 429, 5xx), a value up to this old is still
   * served; past it the read fails. A `not_found`, `forbidden` or `unauthenticated` answer is never
   * papered over: it drops the value at once. Default 15 minutes; at least the TTL.
   *
   * @remarks A longer window keeps a workload running through an outage, but also keeps serving a
   * value that was rotated meanwhile for that long.
   */
  readonly maxStaleMs?: number;
}

export const DEFAULT_CACHE_TTL_MS = 5 * 60_000;
export const DEFAULT_CACHE_MAX_ENTRIES = 1000;
export const DEFAULT_MAX_STALE_MS = 15 * 60_000;

interface Entry<T> {
  value: T;
  /** Clock time of the last successful fetch. */
  fetchedAt: number;
  /** Read since the last fetch: only such entries are refreshed ahead of expiry by the timer. */
  used: boolean;
  load: () => Promise<T>;
  timer?: NodeJS.Timeout;
}

/**
 * A bounded, time-limited cache of secret values (a Map kept in LRU order: a hit is one lookup and
 * one re-insertion). Loads are single-flight per key. Timers are unref()'d: a cache never keeps a
 * script or CLI alive.
 */
export class SecretCache<T> {
  private readonly entries = new Map<string, Entry<T>>();
  private readonly inflight = new Map<string, Promise<T>>();
  private readonly ttl: number;
  private readonly maxEntries: number;
  private readonly refreshAhead: number;
  private readonly maxStale: number;

  constructor(
    options: CacheOptions,
    private readonly clock: () => number,
    private readonly onBackgroundError: (err: unknown) => void,
  ) {
    this.ttl = positive(options.ttlMs, DEFAULT_CACHE_TTL_MS, 'ttlMs');
    this.maxEntries = Math.floor(positive(options.maxEntries, DEFAULT_CACHE_MAX_ENTRIES, 'maxEntries'));
    this.refreshAhead = Math.min(this.ttl, options.refreshAheadMs ?? this.ttl / 5);
    this.maxStale = Math.max(this.ttl, options.maxStaleMs ?? DEFAULT_MAX_STALE_MS);
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * The value for `key`: from memory while fresh (starting a background refresh when it is about
   * to expire), else from `load`. When an expired value cannot be refreshed because the service is
   * unavailable, the value is served until it is `maxStaleMs` old.
   */
  async get(key: string, load: () => Promise<T>): Promise<T> {
    const entry = this.touch(key);
    if (!entry) return this.refresh(key, load);
    const age = this.clock() - entry.fetchedAt;
    if (age < this.ttl) {
      if (age >= this.ttl - this.refreshAhead) this.refreshInBackground(key, entry.load);
      return entry.value;
    }
    try {
      return await this.refresh(key, entry.load);
    } catch (err) {
      const current = this.entries.get(key);
      if (current && isTransient(err) && this.clock() - current.fetchedAt < this.maxStale)
        return current.value;
      this.delete(key);
      throw err;
    }
  }

  /** A value still within its TTL (marking it used), without loading anything. */
  fresh(key: string): T | undefined {
    const entry = this.entries.get(key);
    if (!entry || this.clock() - entry.fetchedAt >= this.ttl) return undefined;
    return this.touch(key)?.value;
  }

  /** A value within the stale window, for a caller whose own refresh failed transiently. */
  stale(key: string): T | undefined {
    const entry = this.entries.get(key);
    if (!entry || this.clock() - entry.fetchedAt >= this.maxStale) return undefined;
    return entry.value;
  }

  /** Stores a value fetched by the caller (e.g. a batch), refreshed later with `load`. */
  set(key: string, value: T, load: () => Promise<T>): void {
    const previous = this.entries.get(key);
    if (previous?.timer) clearTimeout(previous.timer);
    this.entries.delete(key);
    const entry: Entry<T> = { value, fetchedAt: this.clock(), used: false, load };
    this.entries.set(key, entry);
    this.schedule(key, entry, this.ttl - this.refreshAhead);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.delete(oldest);
    }
  }

  delete(key: string): void {
    const entry = this.entries.get(key);
    if (entry?.timer) clearTimeout(entry.timer);
    this.entries.delete(key);
  }

  /** Drops every key for which `match` is true (e.g. all versions of a path that was written). */
  deleteWhere(match: (key: string) => boolean): void {
    for (const key of [...this.entries.keys()]) if (match(key)) this.delete(key);
  }

  clear(): void {
    for (const key of [...this.entries.keys()]) this.delete(key);
  }

  private touch(key: string): Entry<T> | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    // Re-inserting moves the key to the end of the Map's order: the LRU end is the front.
    this.entries.delete(key);
    this.entries.set(key, entry);
    entry.used = true;
    return entry;
  }

  private refresh(key: string, load: () => Promise<T>): Promise<T> {
    const running = this.inflight.get(key);
    if (running) return running;
    const promise = load().then(
      (value) => {
        this.set(key, value, load);
        return value;
      },
      (err: unknown) => {
        // A definite answer (deleted, revoked) removes the value now, even from a background refresh.
        if (!isTransient(err)) this.delete(key);
        throw err;
      },
    );
    const tracked = promise.finally(() => this.inflight.delete(key));
    this.inflight.set(key, tracked);
    return tracked;
  }

  private refreshInBackground(key: string, load: () => Promise<T>): void {
    this.refresh(key, load).catch(this.onBackgroundError);
  }

  /**
   * One timer per entry: when the refresh-ahead window opens, a value read since its last fetch is
   * refreshed; an unread one is dropped once it could no longer be served, so that secret values
   * do not linger in memory.
   */
  private schedule(key: string, entry: Entry<T>, delay: number): void {
    entry.timer = setTimeout(
      () => {
        if (this.entries.get(key) !== entry) return;
        const age = this.clock() - entry.fetchedAt;
        if (age >= this.maxStale) {
          this.delete(key);
        } else if (entry.used) {
          entry.used = false;
          this.refreshInBackground(key, entry.load);
          this.schedule(key, entry, this.maxStale - age);
        } else {
          this.schedule(key, entry, this.maxStale - age);
        }
      },
      Math.max(0, delay),
    );
    entry.timer.unref();
  }
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`cache.${name} must be a positive number`);
  return value;
}
