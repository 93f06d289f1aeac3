import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeProtectedHeader,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  type JWTVerifyOptions,
  jwtVerify,
  type RemoteJWKSet,
} from 'jose';
import type { IssuerConfig } from '../config-file.js';
import { IdentityProviderUnavailableError } from '../errors.js';
import { describeError, type Logger, silentLogger } from '../log.js';
import { AuthRefusal } from './bearer.js';
import { DiscoveryError, discoverJwksUri } from './discovery.js';
import type { Principal } from './principal.js';
import type { TokenVerifier } from './verifier.js';
import { principalFromToken } from './workload.js';

/** Header members that point at key material elsewhere: a verifier that honoured them would trust the token's own choice of key. */
export const FORBIDDEN_HEADERS = ['jku', 'x5u', 'jwk', 'x5c'] as const;

/**
 * How long a failed discovery or JWKS fetch is remembered before the next attempt, so that a down
 * IdP is not hammered (jose's own cool-down only counts from the last *successful* fetch).
 */
const RETRY_MS = 10_000;
/** jose errors that mean "no such key in the set", as opposed to "the set could not be fetched". */
const KEY_SELECTION_ERRORS = new Set(['ERR_JWKS_NO_MATCHING_KEY', 'ERR_JWKS_MULTIPLE_MATCHING_KEYS']);
/** JWKS older than this is fetched again on the next token, whatever its `kid`. */
const JWKS_MAX_AGE_MS = 10 * 60_000;
/** While the IdP is unreachable, its last key set verifies tokens for this long (`jwksMaxStaleSeconds`). */
export const DEFAULT_JWKS_MAX_STALE_SECONDS = 86_400;

/** The last key set the IdP served, kept in memory only: a copy in a table would let its writers add keys. */
interface KnownKeys {
  readonly served: JSONWebKeySet;
  readonly keys: JWTVerifyGetKey;
  /** When the IdP last served it (ms). */
  readonly at: number;
}

export interface OidcVerifierOptions {
  readonly logger?: Logger;
  /** Replaces global fetch for discovery and JWKS (tests). */
  readonly fetch?: typeof fetch;
  /** Clock for the discovery back-off (tests). */
  readonly now?: () => number;
}

/**
 * Throws unless the protected header is a plain JWS header: no key URLs or embedded keys (they are
 * never followed, and a token carrying them is refused outright), an allow-listed algorithm.
 */
export function checkProtectedHeader(token: string, algorithms: readonly string[]): void {
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new AuthRefusal('malformed_header');
  }
  for (const name of FORBIDDEN_HEADERS) {
    if (Object.hasOwn(header, name)) throw new AuthRefusal(`forbidden_header_${name}`);
  }
  if (typeof header.alg !== 'string' || !algorithms.includes(header.alg)) {
    throw new AuthRefusal('algorithm_not_allowed');
  }
}

/**
 * Verifies the access tokens of one configured OIDC issuer with jose: signature by a key of the
 * issuer's JWKS (found by discovery through openid-client, or configured), an allow-listed
 * asymmetric algorithm, exact `iss`, `aud` containing a configured audience, `exp`/`nbf` within the
 * configured skew (at most 60 s), and `typ: at+jwt` when required.
 *
 * The JWKS is cached; a token with an unknown `kid` causes at most one fetch per
 * `jwksRefreshSeconds`, so forged kids cannot make Coffer hammer the IdP.
 */
export class OidcTokenVerifier implements TokenVerifier {
  readonly issuer: string;
  readonly alias: string;
  private keys: Promise<JWTVerifyGetKey> | undefined;
  private retryAt = 0;
  private jwksRetryAt = 0;
  private lastGood: KnownKeys | undefined;
  private epoch = 0;
  /** Why discovery last failed: the IdP could not be reached (503), or answered wrongly (401). */
  private discoveryUnreachable = false;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly verifyOptions: JWTVerifyOptions;

  constructor(
    private readonly config: IssuerConfig,
    private readonly options: OidcVerifierOptions = {},
  ) {
    this.issuer = config.issuer;
    this.alias = config.alias;
    this.logger = options.logger ?? silentLogger;
    // Read at each call, not captured: a clock that tests replace (and jose reads) is the same one.
    this.now = options.now ?? (() => Date.now());
    this.verifyOptions = {
      algorithms: [...config.algorithms],
      issuer: config.issuer,
      audience: [...config.audiences],
      clockTolerance: config.clockSkewSeconds,
      requiredClaims: ['exp'],
      ...(config.requireAtJwt ? { typ: 'at+jwt' } : {}),
    };
  }

  async verify(token: string): Promise<Principal> {
    checkProtectedHeader(token, this.config.algorithms);
    const keys = await this.keySet();
    const { payload } = await jwtVerify(token, keys, this.verifyOptions);
    const principal = principalFromToken(this.config, payload);
    return typeof payload.iat === 'number' ? { ...principal, issuedAt: payload.iat } : principal;
  }

  keyEpoch(): number {
    return this.epoch;
  }

  /** Resolves the JWKS now (optional: the first token does it otherwise). */
  async warmUp(): Promise<void> {
    await this.keySet();
  }

  private keySet(): Promise<JWTVerifyGetKey> {
    if (this.keys) return this.keys;
    if (this.now() < this.retryAt) {
      return Promise.reject(
        this.discoveryUnreachable
          ? new IdentityProviderUnavailableError()
          : new AuthRefusal('issuer_discovery_backoff'),
      );
    }
    const pending = this.resolveKeys().catch((err: unknown) => {
      // A discovery document naming another issuer is a configuration fault, not an outage.
      this.discoveryUnreachable = !(err instanceof DiscoveryError);
      throw this.discoveryUnreachable ? new IdentityProviderUnavailableError() : err;
    });
    this.keys = pending;
    pending.catch((err) => {
      this.keys = undefined;
      this.retryAt = this.now() + RETRY_MS;
      this.logger.warn('issuer discovery failed', {
        issuer: this.alias,
        reason: err instanceof Error ? err.message.slice(0, 200) : 'unknown',
        ...describeError(err),
      });
    });
    return pending;
  }

  private async resolveKeys(): Promise<JWTVerifyGetKey> {
    const url = this.config.jwksUri
      ? new URL(this.config.jwksUri)
      : await discoverJwksUri(this.config.issuer, {
          allowHttpLoopback: this.config.allowHttpLoopback,
          ...(this.options.fetch ? { fetch: this.options.fetch } : {}),
        });
    const jwks = createRemoteJWKSet(url, {
      cooldownDuration: this.config.jwksRefreshSeconds * 1000,
      cacheMaxAge: Math.max(JWKS_MAX_AGE_MS, this.config.jwksRefreshSeconds * 1000),
      timeoutDuration: 5000,
      ...(this.options.fetch ? { [customFetch]: this.options.fetch } : {}),
    });
    return this.withFetchBackoff(jwks);
  }

  /**
   * After a failed JWKS fetch, refuses for a while every token that would need another fetch
   * (stale cache, or a kid the cache lacks), while tokens whose key is cached keep verifying: a
   * forged kid during an IdP outage can neither hammer the IdP nor lock out everyone else.
   */
  private withFetchBackoff(jwks: RemoteJWKSet): JWTVerifyGetKey {
    return async (header, token) => {
      if (this.now() < this.jwksRetryAt) {
        const cached = jwks.fresh ? jwks.jwks()?.keys : undefined;
        if (!cached?.some((k) => k.kid === header.kid))
          return this.fromLastGood(header, token, 'jwks_fetch_backoff');
      }
      try {
        const key = await jwks(header, token);
        this.remember(jwks);
        return key;
      } catch (err) {
        const code = (err as { code?: unknown } | null)?.code;
        if (typeof code === 'string' && KEY_SELECTION_ERRORS.has(code)) {
          // The IdP answered: what it serves now is the key set, a key it dropped is gone.
          this.remember(jwks);
          throw err;
        }
        this.jwksRetryAt = this.now() + RETRY_MS;
        this.logger.warn('JWKS fetch failed', {
          issuer: this.alias,
          reason: typeof code === 'string' ? code : 'fetch',
        });
        return this.fromLastGood(header, token, 'jwks_fetch_failed');
      }
    };
  }

  /** Keeps the key set jose holds when it is one the IdP has just served. */
  private remember(jwks: RemoteJWKSet): void {
    const served = jwks.jwks();
    if (!served || served === this.lastGood?.served) return;
    if (this.lastGood) this.epoch++;
    this.lastGood = { served, keys: createLocalJWKSet(served), at: this.now() };
  }

  /**
   * The IdP cannot be asked: a token is checked against the last key set it served while that is
   * younger than `jwksMaxStaleSeconds`. A kid the set lacks is refused (401) as before: an outage
   * must not turn forged kids into 503s that look like the IdP's fault. With no set young enough,
   * the token cannot be checked at all: 503 `identity_provider_unavailable`.
   */
  private fromLastGood(...[header, token, reason]: [...Parameters<JWTVerifyGetKey>, string]) {
    const maxStaleMs = (this.config.jwksMaxStaleSeconds ?? DEFAULT_JWKS_MAX_STALE_SECONDS) * 1000;
    const known = this.lastGood;
    if (!known || this.now() - known.at >= maxStaleMs) throw new IdentityProviderUnavailableError();
    if (!known.served.keys.some((k) => k.kid === header.kid)) throw new AuthRefusal(reason);
    return known.keys(header, token);
  }
}
