/**
 * How long an unwrapped branch key may be used from memory. Freshness is checked on every use,
 * never by a timer: a Lambda environment is frozen between requests, so a timer could fire long
 * after an entry should have gone. `0` in either bound disables the cache (every use unwraps).
 */
export interface KeyCacheSettings {
  /** Default 300 (5 minutes). */
  readonly maxAgeSeconds: number;
  /** Default 100,000. */
  readonly maxUses: number;
  /** Entries kept at most (one per branch key version in use). Default 1,000. */
  readonly maxEntries?: number;
}

export const DEFAULT_KEY_CACHE: KeyCacheSettings = { maxAgeSeconds: 300, maxUses: 100_000 };

interface Entry {
  readonly key: Buffer;
  readonly createdAt: number;
  uses: number;
}

/** Counters of one process since start (for `coffer keys status`). */
export interface CacheStats {
  hits: number;
  misses: number;
}

/**
 * A bounded in-memory cache of unwrapped branch keys. An entry past its age or use bound is
 * zeroed and dropped when it is next asked for, and never answered: a caller then unwraps again,
 * and if the root cannot answer, fails rather than falls back on the stale key.
 */
export class KeyCache {
  private readonly entries = new Map<string, Entry>();
  readonly stats: CacheStats = { hits: 0, misses: 0 };
  private readonly maxAgeMs: number;
  private readonly maxUses: number;
  private readonly maxEntries: number;

  constructor(
    settings: KeyCacheSettings = DEFAULT_KEY_CACHE,
    private readonly now: () => number = Date.now,
  ) {
    this.maxAgeMs = Math.max(0, settings.maxAgeSeconds) * 1000;
    this.maxUses = Math.max(0, settings.maxUses);
    this.maxEntries = Math.max(1, settings.maxEntries ?? 1000);
  }

  get enabled(): boolean {
    return this.maxAgeMs > 0 && this.maxUses > 0;
  }

  /** The key, if an entry is still fresh; each answer counts as one use. Never hand it out beyond the call. */
  get(id: string): Buffer | undefined {
    const entry = this.entries.get(id);
    if (entry && this.now() - entry.createdAt < this.maxAgeMs && entry.uses < this.maxUses) {
      entry.uses += 1;
      this.stats.hits += 1;
      return entry.key;
    }
    if (entry) this.drop(id);
    this.stats.misses += 1;
    return undefined;
  }

  /** Keeps a copy of `key` (one use is counted: the one the caller unwrapped it for). */
  put(id: string, key: Uint8Array): void {
    if (!this.enabled) return;
    this.drop(id);
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.drop(oldest);
    }
    this.entries.set(id, { key: Buffer.from(key), createdAt: this.now(), uses: 1 });
  }

  /** Zeroes and forgets every entry (`coffer keys flush`, a root change). */
  clear(): void {
    for (const id of [...this.entries.keys()]) this.drop(id);
  }

  get size(): number {
    return this.entries.size;
  }

  private drop(id: string): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    entry.key.fill(0);
    this.entries.delete(id);
  }
}
