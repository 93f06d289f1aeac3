import { randomBytes } from 'node:crypto';
import type { RotatorStep } from '../../../packages/client/src/contract.js';
import type { GrantScope } from '../../authn/principal.js';
import { encodeFields } from '../../crypto/canonical.js';
import type { StorageMacKey } from '../../keys/storage-mac.js';
import { validatePath } from '../../paths.js';

/*
 * Rotation grants (docs/rotation.md, "Grants"). An external rotator is handed one for each step
 * it is called for; it lets the rotator read one stage of one secret at one version during that
 * step, for a short time, and nothing else. A grant is
 *
 *   cgr1.<base64url payload JSON>.<base64url HMAC-SHA256>
 *
 * with the MAC under the storage-integrity key (the key hierarchy's MAC key, the one that vouches
 * for heads), over a domain-separated encoding bound to the installation. A table writer has no
 * key to make one; a rotator cannot change its scope without breaking the MAC. Verifying it gives
 * a scope only; what the scope allows is decided by a hard check (grant-access.ts), never Cedar.
 */

export const GRANT_PREFIX = 'cgr1.';
const DOMAIN = 'coffer/rotation-grant/v1';
/** A grant outlives its step's call by little: the call is bounded (ROTATOR_STEP_TIMEOUT_MS). */
export const DEFAULT_GRANT_SECONDS = 120;
/** Longer than any grant this code makes, plus clock skew: a longer one was not made here. */
const MAX_GRANT_SECONDS = 900;
/** Far more than a grant needs (path ≤ 512 bytes); a longer bearer is not a grant. */
const MAX_GRANT_CHARS = 2048;

const STAGE_OF_STEP: Readonly<Record<RotatorStep, GrantScope['stage']>> = {
  setSecret: 'pending',
  testSecret: 'pending',
  revertSecret: 'previous',
};

export interface RotationGrantsOptions {
  readonly key: StorageMacKey;
  /** The installation id heads are bound to: a grant of one installation means nothing in another. */
  readonly binding: string;
  readonly now?: () => Date;
  readonly ttlSeconds?: number;
}

/** Makes and checks rotation grants. */
export class RotationGrants {
  private readonly key: StorageMacKey;
  private readonly binding: string;
  private readonly now: () => Date;
  private readonly ttlSeconds: number;

  constructor(options: RotationGrantsOptions) {
    this.key = options.key;
    this.binding = options.binding;
    this.now = options.now ?? (() => new Date());
    this.ttlSeconds = options.ttlSeconds ?? DEFAULT_GRANT_SECONDS;
  }

  /** The stage a step's grant reads: `pending`, or `previous` for `revertSecret`. */
  static stageOf(step: RotatorStep): GrantScope['stage'] {
    return STAGE_OF_STEP[step];
  }

  /** A grant for one step on one version of one secret. */
  issue(path: string, version: number, step: RotatorStep): string {
    const payload = {
      p: path,
      v: version,
      s: step,
      e: Math.floor(this.now().getTime() / 1000) + this.ttlSeconds,
      k: this.key.keyId,
      // Two grants for the same step differ, so a leaked one is told apart in logs by its id.
      n: randomBytes(9).toString('base64url'),
    };
    const body = Buffer.from(JSON.stringify(payload), 'utf8').toString('base64url');
    const mac = this.key.mac(this.signed(body)).toString('base64url');
    return `${GRANT_PREFIX}${body}.${mac}`;
  }

  /** The scope of a valid, unexpired grant; undefined for anything else (never says why). */
  verify(token: string): GrantScope | undefined {
    if (token.length > MAX_GRANT_CHARS || !token.startsWith(GRANT_PREFIX)) return undefined;
    const [body, mac, ...rest] = token.slice(GRANT_PREFIX.length).split('.');
    if (body === undefined || mac === undefined || rest.length > 0) return undefined;
    let payload: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
      payload = parsed as Record<string, unknown>;
    } catch {
      return undefined;
    }
    if (typeof payload.k !== 'string') return undefined;
    if (!this.key.verify(payload.k, this.signed(body), Buffer.from(mac, 'base64url'))) return undefined;
    const { p, v, s, e } = payload;
    if (typeof p !== 'string' || typeof s !== 'string' || !(s in STAGE_OF_STEP)) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) return undefined;
    if (typeof e !== 'number' || !Number.isInteger(e)) return undefined;
    const nowSeconds = Math.floor(this.now().getTime() / 1000);
    if (e <= nowSeconds || e > nowSeconds + MAX_GRANT_SECONDS) return undefined;
    let path: string;
    try {
      path = validatePath(p);
    } catch {
      return undefined;
    }
    const step = s as RotatorStep;
    return { path, version: v, step, stage: STAGE_OF_STEP[step], expiresAt: e };
  }

  private signed(body: string): Buffer {
    return encodeFields(DOMAIN, [this.binding, body]);
  }
}
