import { createHash } from 'node:crypto';
import type { Principal } from './principal.js';

/** How long a verified token is trusted without checking its signature again. */
export const DEFAULT_TOKEN_CACHE_SECONDS = 60;
export const DEFAULT_TOKEN_CACHE_ENTRIES = 10_000;

interface Entry {
  readonly principal: Principal;
  readonly until: number;
  readonly verifier: object;
  readonly epoch: number;
}

/**
 * Remembers tokens that verified, so that a workload reading many secrets with one token pays for
 * one signature check (an Ed25519 or RSA verification, the largest part of authentication) rather
 * than one per request. An entry is used only
 * - until the token's own `exp` (never the verifier's clock skew past it) and at most `ttlSeconds`;
 * - while its verifier's key set is the one that verified it (`epoch`): a key the IdP stops serving
 *   ends the entries it vouched for at the same moment it stops verifying new tokens.
 * Entries are keyed by the SHA-256 of the token, so the cache holds no usable credential; it is
 * bounded, the oldest entry giving way. Decisions made after authentication (revocations, Cedar)
 * run on every request as before.
 */
export class VerifiedTokenCache {
  readonly #entries = new Map<string, Entry>();
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #now: () => number;

  constructor(options: { ttlSeconds?: number; maxEntries?: number; now?: () => number } = {}) {
    this.#ttlMs = (options.ttlSeconds ?? DEFAULT_TOKEN_CACHE_SECONDS) * 1000;
    this.#max = options.maxEntries ?? DEFAULT_TOKEN_CACHE_ENTRIES;
    // Read at each call, not captured: a clock that tests replace is the one jose reads too.
    this.#now = options.now ?? (() => Date.now());
  }

  static keyOf(token: string): string {
    return createHash('sha256').update(token).digest('base64url');
  }

  /** The principal a token verified as, if that still holds for `verifier` at `epoch`. */
  get(key: string, verifier: object, epoch: number): Principal | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.until <= this.#now() || entry.verifier !== verifier || entry.epoch !== epoch) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.principal;
  }

  /**
   * The verifier that vouched for a remembered token, so that a repeat request finds its entry by
   * the token's hash alone, before decoding the token to learn its issuer (the cache's hits are
   * most requests). The entry is still used only through `get`, with that verifier's key epoch.
   */
  verifierOf(key: string): object | undefined {
    return this.#entries.get(key)?.verifier;
  }

  /** Remembers a token that has just verified; `exp` is its (verified) expiry in seconds. */
  set(key: string, principal: Principal, verifier: object, epoch: number, exp: number | undefined): void {
    if (this.#ttlMs <= 0 || this.#max <= 0) return;
    const now = this.#now();
    const until = Math.min(now + this.#ttlMs, typeof exp === 'number' ? exp * 1000 : now);
    if (until <= now) return;
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    this.#entries.set(key, { principal, until, verifier, epoch });
  }

  get size(): number {
    return this.#entries.size;
  }
}
