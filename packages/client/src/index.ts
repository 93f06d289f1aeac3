import { randomUUID } from 'node:crypto';
import { type CacheOptions, SecretCache } from './cache.js';
import {
  type AccessWhatPage,
  type AccessWhoAction,
  type AccessWhoReport,
  BATCH_GET_MAX_PATHS,
  type BatchGetResponse,
  type DeleteResult,
  type DestroyResult,
  type GenerateRequest,
  type GenerateResult,
  isDotSegment,
  type LifecyclePage,
  type ListPage,
  type MetadataPatch,
  type OffboardReport,
  type OffboardRequest,
  type PurgeResult,
  type PutRequest,
  type PutResult,
  type RestoreResult,
  type RotationPolicyRequest,
  type RotationResult,
  type SecretMetadata,
  type SecretValue,
  type StageName,
  type WhoAmI,
} from './contract.js';
import { parseEndpoint } from './endpoint.js';
import { errorSpec, mayRetry } from './error-registry.js';
import {
  CofferClientError,
  CofferInvalidRequestError,
  CofferNetworkError,
  CofferUnauthenticatedError,
  clientError,
  isTransient,
} from './errors.js';
import { neverSent } from './failures.js';
import { type RetryOptions, type RetryPolicy, retry, retryAfterMs, retryPolicy } from './retry.js';
import { type IamAuthOptions, SigV4RequestSigner } from './sigv4.js';
import type { ClientTlsOptions } from './tls.js';
import { secretBytes, secretField, secretText } from './values.js';

export type { CacheOptions } from './cache.js';
export { DEFAULT_CACHE_MAX_ENTRIES, DEFAULT_CACHE_TTL_MS, DEFAULT_MAX_STALE_MS } from './cache.js';
export type {
  AccessPrincipal,
  AccessWhatItem,
  AccessWhatPage,
  AccessWhoAction,
  AccessWhoPrincipal,
  AccessWhoReport,
  CertificateInfo,
  CertificateMetadata,
  CertificateParams,
  DeleteResult,
  DestroyResult,
  GenerateRequest,
  GenerateResult,
  KeyAlgorithm,
  KeypairInfo,
  KeypairParams,
  LifecycleItem,
  LifecyclePage,
  ListItem,
  ListPage,
  MetadataPatch,
  OffboardRead,
  OffboardReport,
  OffboardRequest,
  OffboardRotation,
  PasswordClass,
  PasswordParams,
  PublicKeyMetadata,
  PurgeResult,
  PutResult,
  RestoreResult,
  RotationInfo,
  RotationPolicyRequest,
  RotationRequestInfo,
  RotationResult,
  SecretMetadata,
  SecretType,
  SecretValue,
  StageLabels,
  StageName,
  VersionInfo,
  WhoAmI,
} from './contract.js';
export {
  ACCESS_WHAT_LIMIT,
  ACCESS_WHO_ACTIONS,
  BATCH_GET_MAX_PATHS,
  BODY_MAX_BYTES,
  GENERATED_TYPES,
  KEY_ALGORITHMS,
  LIST_LIMIT,
  MAX_VERSIONS,
  PASSWORD_CLASS_NAMES,
  PASSWORD_LENGTH,
  PATH_MAX_BYTES,
  PATH_MAX_SEGMENTS,
  pathProblem,
  RECOVERY_DAYS,
  SECRET_TYPES,
  TAGS_MAX,
  VALIDITY_DAYS,
  VALUE_MAX_BYTES,
} from './contract.js';
export type { ErrorCode } from './error-registry.js';
export {
  CofferClientError,
  CofferConflictError,
  CofferForbiddenError,
  CofferIntegrityError,
  CofferInvalidRequestError,
  CofferNetworkError,
  CofferNotFoundError,
  CofferThrottledError,
  CofferUnauthenticatedError,
  CofferUnavailableError,
  clientError,
  isTransient,
} from './errors.js';
export type { RetryOptions } from './retry.js';
export type { AwsCredentials, AwsCredentialsProvider, IamAuthOptions } from './sigv4.js';
export type { ClientTlsOptions } from './tls.js';
export { secretBytes, secretField, secretText } from './values.js';

/**
 * A token provider is called before each request (so it should cache its token itself), and once
 * more with `forceRefresh: true` when the server answers 401.
 */
export type TokenProvider = (options: { readonly forceRefresh: boolean }) => Promise<string> | string;

/**
 * How the client proves who it is: exactly one of a bearer token (people, CI with an OIDC token),
 * a token provider, or IAM (SigV4, for Lambda/ECS/EC2 roles; requests go to `/iam/v1`).
 */
export type ClientAuth =
  | { readonly token: string; readonly tokenProvider?: never; readonly iam?: never }
  | { readonly tokenProvider: TokenProvider; readonly token?: never; readonly iam?: never }
  | { readonly iam: IamAuthOptions; readonly token?: never; readonly tokenProvider?: never };

export interface ClientOptions {
  /** The server, e.g. `http://127.0.0.1:8270` or the API's URL (a stage path is kept). */
  readonly endpoint: string;
  /**
   * The caller's credentials. May be left out only when `tls.cert` is given: the client
   * certificate is then the caller's identity (no Authorization header is sent).
   */
  readonly auth?: ClientAuth;
  /**
   * A client certificate and key (mutual TLS) and/or a CA bundle for the server's certificate
   * (a private CA, a local server's self-signed certificate). Needs an https endpoint; requests
   * then go through `node:https` instead of the global fetch, with the same retries, timeouts and
   * errors. A bearer token, when also given, is what the server authenticates: the certificate
   * then only secures the connection.
   */
  readonly tls?: ClientTlsOptions;
  /** The value cache; `false` turns it off. Defaults: 5 min TTL, 1000 values, 15 min stale limit. */
  readonly cache?: CacheOptions | false;
  readonly retry?: RetryOptions;
  /** Per attempt. Default 10 s. */
  readonly timeoutMs?: number;
  /** Replaces the global fetch (tests, proxies). Not with `tls`. */
  readonly fetch?: typeof fetch;
  readonly userAgent?: string;
  /** Failures of background cache refreshes (the next read sees them too). Default: ignored. */
  readonly onBackgroundError?: (err: CofferClientError) => void;
  /** Milliseconds since the epoch; replaced in tests of the cache. */
  readonly clock?: () => number;
}

/** One answer of `batchGet`, in the order asked. */
export type BatchGetResult =
  | { readonly path: string; readonly ok: true; readonly secret: SecretValue }
  | { readonly path: string; readonly ok: false; readonly error: CofferClientError };

/**
 * `type` left out keeps the secret's type; a new secret is `binary` when written as bytes, else
 * `text`.
 */
export interface PutOptions extends Omit<PutRequest, 'value' | 'valueBase64'> {
  /** Default: a fresh random key per call, so that the client's own retries never write twice. */
  idempotencyKey?: string;
}

export interface GenerateOptions {
  /** Default: a fresh random key per call, so that the client's own retries never generate twice. */
  idempotencyKey?: string;
}

/** Options of `accessWhat`. */
export interface AccessWhatOptions {
  /** Groups to evaluate with instead of the principal's last-seen groups. */
  readonly groups?: readonly string[];
  readonly prefix?: string;
  /** Secrets examined per page (1-1000; default 500). */
  readonly limit?: number;
}

export interface ListOptions {
  /** `/` lists one level, with sub-folders in `folders`. */
  delimiter?: '/';
  /** Page size (`LIST_LIMIT`: 1-1000, server default 100). */
  limit?: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * A path as URL segments. A `.` or `..` segment is refused here, as the server would: a URL
 * resolves it away (`a/../b` would become a request for `b`, another secret than the one named).
 */
function encodePath(path: string): string {
  const segments = path.split('/');
  if (segments.some(isDotSegment)) {
    throw new CofferInvalidRequestError('invalid_path', 400, 'path has a "." or ".." segment');
  }
  return segments.map(encodeURIComponent).join('/');
}
const cacheKey = (path: string, version?: number) => `${path}#${version ?? 'latest'}`;

/** One `.cedar` file of a policy set to push. */
export interface PolicyFileInput {
  readonly name: string;
  readonly text: string;
}

export interface PolicyPushResult {
  readonly version: number;
  readonly hash: string;
  readonly status: 'active' | 'pending';
  readonly generation?: number;
}

export interface PolicyVersionInfo {
  readonly version: number;
  readonly hash: string;
  readonly files: readonly string[];
  readonly by: string;
  readonly at: string;
  readonly comment?: string;
}

export interface PolicyHistoryResult {
  readonly bundledHash: string;
  readonly activeHash: string;
  readonly active: {
    readonly version: number;
    readonly generation: number;
    readonly hash: string;
    readonly action: 'push' | 'rollback';
    readonly from?: number;
    readonly by: string;
    readonly at: string;
    readonly approvedBy?: string;
  } | null;
  readonly pending: {
    readonly version: number;
    readonly hash: string;
    readonly action: 'push' | 'rollback';
    readonly from?: number;
    readonly by: string;
    readonly at: string;
  } | null;
  readonly versions: readonly PolicyVersionInfo[];
}

/** A principal (any type when `type` is left out) or a group; times are ISO 8601. */
export type RevokeInput = (
  | {
      readonly principal: { readonly type?: 'User' | 'Role' | 'Workload'; readonly id: string };
      readonly group?: never;
    }
  | { readonly group: string; readonly principal?: never }
) & {
  readonly reason?: string;
  readonly until?: string;
  readonly tokensIssuedBefore?: string;
};

export interface RevocationInfo {
  readonly id: string;
  readonly principal?: { readonly type?: string; readonly id: string };
  readonly group?: string;
  readonly reason?: string;
  readonly until?: string;
  readonly tokensIssuedBefore?: string;
  readonly by: string;
  readonly at: string;
  /** In `revocations()`: whether it still applies (`until` not passed). */
  readonly live?: boolean;
}

interface RequestSpec {
  readonly method: string;
  /** After the API prefix, e.g. `/secrets/a/b`; or absolute (`/v1/health`) with `absolute`. */
  readonly route: string;
  readonly query?: Readonly<Record<string, string>>;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * Safe to repeat: reads, and writes carrying an Idempotency-Key. These are retried on 429, 5xx
   * gateway/unavailable answers and network errors; the others only when the request certainly
   * never reached the server (connection refused, host not found).
   */
  readonly idempotent: boolean;
  readonly absolute?: boolean;
}

/**
 * The Coffer client: typed calls, a cache whose warm `get` is a Map lookup, retries with jittered
 * backoff, and bearer or SigV4 authentication.
 *
 * @example
 * const coffer = createClient({ endpoint: 'http://127.0.0.1:8270', auth: { token } });
 * const { value } = await coffer.get('team-a/db/password');
 */
export class CofferClient {
  private readonly endpoint: string;
  private readonly prefix: string;
  private readonly fetchImpl: typeof fetch;
  private readonly retry: RetryPolicy;
  private readonly timeoutMs: number;
  private readonly cache: SecretCache<SecretValue> | undefined;
  private readonly signer: SigV4RequestSigner | undefined;

  constructor(private readonly options: ClientOptions) {
    const url = parseEndpoint(options.endpoint);
    this.endpoint = options.endpoint.replace(/\/+$/, '');
    const tls = checkTls(options, url);
    const auth = (options.auth ?? {}) as { token?: unknown; tokenProvider?: unknown; iam?: unknown };
    const kinds = [auth.token !== undefined, auth.tokenProvider !== undefined, auth.iam !== undefined];
    const count = kinds.filter(Boolean).length;
    if (count > 1 || (count === 0 && tls?.cert === undefined)) {
      throw new CofferClientError(
        'invalid_config',
        0,
        'auth takes exactly one of token, tokenProvider or iam (or is left out with a tls client certificate)',
      );
    }
    if (options.auth?.iam && tls?.cert !== undefined) {
      // The mutual-TLS endpoint has no /iam/v1 route, and the IAM one asks for no certificate.
      throw new CofferClientError('invalid_config', 0, 'iam and a tls client certificate do not go together');
    }
    this.signer = options.auth?.iam ? new SigV4RequestSigner(options.auth.iam, url) : undefined;
    // API Gateway's IAM authorizer guards /iam/v1; bearer callers use /v1.
    this.prefix = this.signer ? '/iam/v1' : '/v1';
    this.fetchImpl = options.fetch ?? (tls ? lazyHttpsFetch(tls) : fetch);
    this.retry = retryPolicy(options.retry);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const onBackgroundError = options.onBackgroundError;
    this.cache =
      options.cache === false
        ? undefined
        : new SecretCache<SecretValue>(options.cache ?? {}, options.clock ?? Date.now, (err) =>
            onBackgroundError?.(err as CofferClientError),
          );
  }

  /** Values held by the cache right now. */
  get cachedValues(): number {
    return this.cache?.size ?? 0;
  }

  health(): Promise<{ status: string }> {
    return this.send({ method: 'GET', route: '/v1/health', idempotent: true, absolute: true });
  }

  whoami(): Promise<WhoAmI> {
    return this.send({ method: 'GET', route: '/whoami', idempotent: true });
  }

  /**
   * A secret's latest value (or `version`). Served from the cache while fresh: no request at all.
   * `noCache` reads through to the server (and refreshes the cache).
   */
  async get(
    path: string,
    options: { version?: number; stage?: StageName; noCache?: boolean } = {},
  ): Promise<SecretValue> {
    // A stage moves with every rotation: read through, never from the cache.
    if (options.stage !== undefined) return this.fetchSecret(path, options.version, options.stage);
    const load = () => this.fetchSecret(path, options.version);
    if (!this.cache) return load();
    const key = cacheKey(path, options.version);
    if (options.noCache) this.cache.delete(key);
    return { ...(await this.cache.get(key, load)) };
  }

  /**
   * A secret's value as bytes, exactly as stored (any type; text as its UTF-8). Cached like `get`.
   *
   * @example const der = await coffer.getBytes('tls/der-key');
   */
  async getBytes(path: string, options: { version?: number; noCache?: boolean } = {}): Promise<Uint8Array> {
    return secretBytes(await this.get(path, options));
  }

  /**
   * A secret's value as text. A `binary` secret has none: CofferClientError `binary_value`.
   *
   * @example const password = await coffer.getText('team-a/db/password');
   */
  async getText(path: string, options: { version?: number; noCache?: boolean } = {}): Promise<string> {
    return secretText(await this.get(path, options));
  }

  /**
   * One field of a secret whose value is a JSON object (`json`, `keypair`, `certificate`):
   * `no_such_field` when it has no such field, `not_json` when the value is no JSON object.
   *
   * @example const key = await coffer.getField('tls/api', 'private_key');
   */
  async getField(
    path: string,
    field: string,
    options: { version?: number; noCache?: boolean } = {},
  ): Promise<string> {
    return secretField(await this.get(path, options), field);
  }

  /**
   * Latest values of many secrets in one request per 20 paths (`POST /v1/batch-get`), each path
   * authorized on its own: the answer holds a value or an error per path, in the order asked.
   * Fresh cached values are used without asking; fetched ones are cached.
   */
  async batchGet(paths: readonly string[]): Promise<BatchGetResult[]> {
    const out = new Map<string, BatchGetResult>();
    const wanted: string[] = [];
    for (const path of new Set(paths)) {
      const key = cacheKey(path);
      if (this.cache?.fresh(key) !== undefined) {
        const secret = await this.cache.get(key, () => this.fetchSecret(path));
        out.set(path, { path, ok: true, secret: { ...secret } });
      } else {
        wanted.push(path);
      }
    }
    const chunks: string[][] = [];
    for (let i = 0; i < wanted.length; i += BATCH_GET_MAX_PATHS) {
      chunks.push(wanted.slice(i, i + BATCH_GET_MAX_PATHS));
    }
    await Promise.all(chunks.map((chunk) => this.fetchBatch(chunk, out)));
    return paths.map((path) => out.get(path) as BatchGetResult);
  }

  /**
   * Writes a new version: text (a string) or bytes (a Uint8Array, sent as `valueBase64` and
   * stored exactly). Retried safely: the request carries an Idempotency-Key.
   *
   * @example await coffer.put('bin/raw', new Uint8Array([0xff, 0xfe]));
   */
  async put(path: string, value: string | Uint8Array, options: PutOptions = {}): Promise<PutResult> {
    const { idempotencyKey, ...rest } = options;
    const body =
      typeof value === 'string'
        ? { value, ...rest }
        : {
            valueBase64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64'),
            ...rest,
          };
    try {
      return await this.send({
        method: 'PUT',
        route: `/secrets/${encodePath(path)}`,
        body,
        headers: { 'idempotency-key': idempotencyKey ?? randomUUID() },
        idempotent: true,
      });
    } finally {
      this.invalidate(path);
    }
  }

  /**
   * Generates a value on the server and stores it as a new version (`POST /v1/generate`): a
   * password, a key pair or a certificate (self-signed, a CA, or issued by a CA secret named by
   * `issuer`, which needs Cedar `issue` on it). The answer has the version and public metadata;
   * the value itself never travels, read it with `get` where policy allows.
   *
   * @example
   * await coffer.generate('web/certs/api', {
   *   type: 'certificate', commonName: 'api.example.com', sans: { dns: ['api.example.com'] },
   *   validityDays: 30, issuer: 'pki/web-ca',
   * });
   */
  async generate(
    path: string,
    request: GenerateRequest,
    options: GenerateOptions = {},
  ): Promise<GenerateResult> {
    try {
      return await this.send({
        method: 'POST',
        route: `/generate/${encodePath(path)}`,
        body: request,
        headers: { 'idempotency-key': options.idempotencyKey ?? randomUUID() },
        idempotent: true,
      });
    } finally {
      this.invalidate(path);
    }
  }

  /** Soft delete: restorable for `recoveryDays` (7-30, default 7). */
  async delete(path: string, options: { recoveryDays?: number } = {}): Promise<DeleteResult> {
    try {
      return await this.send({
        method: 'DELETE',
        route: `/secrets/${encodePath(path)}`,
        ...(options.recoveryDays !== undefined
          ? { query: { recoveryDays: String(options.recoveryDays) } }
          : {}),
        idempotent: false,
      });
    } finally {
      this.invalidate(path);
    }
  }

  async restore(path: string): Promise<RestoreResult> {
    try {
      return await this.send({ method: 'POST', route: `/restore/${encodePath(path)}`, idempotent: false });
    } finally {
      this.invalidate(path);
    }
  }

  /**
   * Removes a soft-deleted secret at once, before its recovery window ends, so that its path can be
   * used again. Needs Cedar `admin` on the secret; a secret that is not deleted is `not_found`.
   */
  async purge(path: string): Promise<PurgeResult> {
    try {
      return await this.send({ method: 'POST', route: `/purge/${encodePath(path)}`, idempotent: false });
    } finally {
      this.invalidate(path);
    }
  }

  /** Irreversibly erases versions of a secret. */
  async destroy(path: string, versions: number[]): Promise<DestroyResult> {
    try {
      return await this.send({
        method: 'POST',
        route: `/destroy/${encodePath(path)}`,
        body: { versions },
        idempotent: false,
      });
    } finally {
      this.invalidate(path);
    }
  }

  /**
   * Rotates a secret now with its own generator (`POST /v1/rotate`, Cedar `write`): a pending
   * version is generated, then made current (the old current becomes `previous`).
   *
   * @example const { version } = await coffer.rotate('team-a/db/password');
   */
  async rotate(path: string): Promise<RotationResult> {
    try {
      return await this.send({ method: 'POST', route: `/rotate/${encodePath(path)}`, idempotent: false });
    } finally {
      this.invalidate(path);
    }
  }

  /**
   * Moves `current` back to the `previous` version (`POST /v1/revert`, Cedar `write`); no version
   * is written, and the version that was current becomes `previous`.
   */
  async revert(path: string): Promise<RotationResult> {
    try {
      return await this.send({ method: 'POST', route: `/revert/${encodePath(path)}`, idempotent: false });
    } finally {
      this.invalidate(path);
    }
  }

  /**
   * Sets a rotation policy with the secret's own generator (`PUT /v1/rotation`, Cedar
   * `writeMetadata`).
   *
   * @example await coffer.setRotation('team-a/db/password', { every: '30d' });
   */
  async setRotation(path: string, policy: RotationPolicyRequest): Promise<SecretMetadata> {
    return this.send({
      method: 'PUT',
      route: `/rotation/${encodePath(path)}`,
      body: policy,
      idempotent: true,
    });
  }

  /**
   * One page of the secrets under `prefix` whose rotation is overdue, or whose certificate expires
   * within `within` (a duration, `30d`), that the caller may list. Pass a page's `cursor` back for
   * the next; `lifecycleAll` walks every page.
   *
   * @example const { items, cursor } = await coffer.lifecycle('expiring', { within: '30d' });
   */
  async lifecycle(
    kind: 'rotation-overdue' | 'expiring',
    options: { prefix?: string; within?: string; limit?: number; cursor?: string } = {},
  ): Promise<LifecyclePage> {
    const query: Record<string, string> = {};
    if (options.prefix) query.prefix = options.prefix;
    if (kind === 'expiring' && options.within) query.within = options.within;
    if (options.limit !== undefined) query.limit = String(options.limit);
    if (options.cursor) query.cursor = options.cursor;
    return this.send({ method: 'GET', route: `/lifecycle/${kind}`, query, idempotent: true });
  }

  /**
   * Every page of a lifecycle listing, following cursors.
   *
   * @example
   * for await (const page of coffer.lifecycleAll('rotation-overdue')) console.log(page.items);
   */
  async *lifecycleAll(
    kind: 'rotation-overdue' | 'expiring',
    options: { prefix?: string; within?: string; limit?: number } = {},
  ): AsyncGenerator<LifecyclePage> {
    let cursor: string | undefined;
    do {
      const page = await this.lifecycle(kind, { ...options, ...(cursor ? { cursor } : {}) });
      yield page;
      cursor = page.cursor;
    } while (cursor);
  }

  /** Removes a secret's rotation policy (`DELETE /v1/rotation`, Cedar `writeMetadata`). */
  async clearRotation(path: string): Promise<SecretMetadata> {
    return this.send({ method: 'DELETE', route: `/rotation/${encodePath(path)}`, idempotent: true });
  }

  /** Metadata and the version list of a secret (no values). */
  async history(path: string): Promise<SecretMetadata> {
    return this.send({ method: 'GET', route: `/meta/${encodePath(path)}`, idempotent: true });
  }

  async patchMetadata(path: string, patch: MetadataPatch): Promise<SecretMetadata> {
    return this.send({ method: 'PATCH', route: `/meta/${encodePath(path)}`, body: patch, idempotent: false });
  }

  /**
   * Key administration (`coffer keys …`, Cedar `admin`): `status` reads, the others change keys.
   * Answers are the server's JSON (docs/keys.md). Only `status` is retried.
   *
   * @example
   * await client.keyAdmin('rotate', { folder: 'team-a' });
   */
  async keyAdmin<T = Record<string, unknown>>(
    operation: 'status' | 'rotate' | 'revert' | 'flush' | 'rewrap' | 'retire',
    body: Record<string, unknown> = {},
  ): Promise<T> {
    if (operation === 'status') return this.send({ method: 'GET', route: '/keys/status', idempotent: true });
    return this.send({ method: 'POST', route: `/keys/${operation}`, body, idempotent: false });
  }

  /** One page of a listing. */
  listPage(prefix: string, options: ListOptions & { cursor?: string } = {}): Promise<ListPage> {
    const query: Record<string, string> = { prefix };
    if (options.delimiter) query.delimiter = options.delimiter;
    if (options.limit) query.limit = String(options.limit);
    if (options.cursor) query.cursor = options.cursor;
    return this.send({ method: 'GET', route: '/list', query, idempotent: true });
  }

  /**
   * Every page of a listing, following cursors. Every page but the last holds `limit` entries
   * (the server skips what the caller may not list).
   *
   * @example
   * for await (const page of coffer.list('team-a/')) for (const item of page.items) console.log(item.path);
   */
  async *list(prefix: string, options: ListOptions = {}): AsyncGenerator<ListPage> {
    let cursor: string | undefined;
    do {
      const page = await this.listPage(prefix, { ...options, ...(cursor ? { cursor } : {}) });
      yield page;
      cursor = page.cursor;
    } while (cursor);
  }

  /**
   * Admin (Cedar `admin` on the root folder): sends a policy set; the server validates it against
   * its schema and activates it (or holds it for a second admin's approval).
   */
  policyPush(files: readonly PolicyFileInput[], comment?: string): Promise<PolicyPushResult> {
    return this.send({
      method: 'POST',
      route: '/admin/policies',
      body: { files, ...(comment !== undefined ? { comment } : {}) },
      idempotent: false,
    });
  }

  /** Admin: the pushed versions (who, when, hash), the active one and any pending change. */
  policyHistory(): Promise<PolicyHistoryResult> {
    return this.send({ method: 'GET', route: '/admin/policies', idempotent: true });
  }

  /** Admin: reactivates version `version`'s files as a new version. */
  policyRollback(version: number): Promise<PolicyPushResult> {
    return this.send({
      method: 'POST',
      route: '/admin/policies/rollback',
      body: { version },
      idempotent: false,
    });
  }

  /** Admin (a second one): activates the pending push or rollback `version`. */
  policyApprove(version: number): Promise<PolicyPushResult> {
    return this.send({
      method: 'POST',
      route: '/admin/policies/approve',
      body: { version },
      idempotent: false,
    });
  }

  /** Admin: revokes a principal or a group on every instance within the revocation bound. */
  revoke(input: RevokeInput): Promise<RevocationInfo> {
    return this.send({ method: 'POST', route: '/admin/revocations', body: input, idempotent: false });
  }

  /** Admin: the revocation list. */
  async revocations(): Promise<RevocationInfo[]> {
    const out = await this.send<{ revocations: RevocationInfo[] }>({
      method: 'GET',
      route: '/admin/revocations',
      idempotent: true,
    });
    return out.revocations;
  }

  /** Admin: removes a revocation by its id (`r-…`). */
  unrevoke(id: string): Promise<{ id: string; removed: true }> {
    return this.send({
      method: 'DELETE',
      route: `/admin/revocations/${encodeURIComponent(id)}`,
      idempotent: true,
    });
  }

  /**
   * One page of `access what`: what a principal may read, write or list (Cedar `admin` on the
   * prefix's folder). `principal` is `Type::"id"` or an id the server has seen; `groups` evaluates
   * with those groups instead of the last-seen ones; `limit` counts secrets examined per page.
   */
  accessWhatPage(
    principal: string,
    options: AccessWhatOptions & { cursor?: string } = {},
  ): Promise<AccessWhatPage> {
    const query: Record<string, string> = { principal };
    if (options.groups) query.groups = options.groups.join(',');
    if (options.prefix) query.prefix = options.prefix;
    if (options.limit) query.limit = String(options.limit);
    if (options.cursor) query.cursor = options.cursor;
    return this.send({ method: 'GET', route: '/access/what', query, idempotent: true });
  }

  /**
   * Every page of `access what`, following cursors. A page may hold no item while more follow.
   *
   * @example
   * for await (const page of coffer.accessWhat('User::"corp:alice"')) console.log(page.items);
   */
  async *accessWhat(principal: string, options: AccessWhatOptions = {}): AsyncGenerator<AccessWhatPage> {
    let cursor: string | undefined;
    do {
      const page = await this.accessWhatPage(principal, { ...options, ...(cursor ? { cursor } : {}) });
      yield page;
      cursor = page.cursor;
    } while (cursor);
  }

  /** `access who`: the groups and known principals that may take `action` (default read) on a secret. */
  accessWho(path: string, options: { action?: AccessWhoAction } = {}): Promise<AccessWhoReport> {
    const query: Record<string, string> = { path };
    if (options.action) query.action = options.action;
    return this.send({ method: 'GET', route: '/access/who', query, idempotent: true });
  }

  /**
   * Admin: offboards a principal — revokes it first, then reports the secrets it read in the
   * window (from the audit log), those it could read, and their rotation. Not retried: a repeat
   * reuses the revocation, so it is safe to run again by hand.
   *
   * @example
   * const report = await coffer.offboard({ principal: 'User::"corp:alice"', days: 30 });
   */
  offboard(input: OffboardRequest): Promise<OffboardReport> {
    return this.send({ method: 'POST', route: '/admin/offboard', body: input, idempotent: false });
  }

  /** Forgets every cached value (and stops the cache's timers). */
  clearCache(): void {
    this.cache?.clear();
  }

  private async fetchSecret(path: string, version?: number, stage?: StageName): Promise<SecretValue> {
    const query: Record<string, string> = {};
    if (version !== undefined) query.version = String(version);
    if (stage !== undefined) query.stage = stage;
    return this.send({
      method: 'GET',
      route: `/secrets/${encodePath(path)}`,
      ...(Object.keys(query).length > 0 ? { query } : {}),
      idempotent: true,
    });
  }

  private async fetchBatch(paths: string[], out: Map<string, BatchGetResult>): Promise<void> {
    let response: BatchGetResponse;
    try {
      response = await this.send({ method: 'POST', route: '/batch-get', body: { paths }, idempotent: true });
    } catch (err) {
      // The whole request failed: stale values bridge an outage only if every path has one.
      const stale = paths.map((path) => this.cache?.stale(cacheKey(path)));
      if (!isTransient(err) || stale.some((s) => s === undefined)) throw err;
      paths.forEach((path, i) => {
        out.set(path, { path, ok: true, secret: { ...(stale[i] as SecretValue) } });
      });
      return;
    }
    const byPath = new Map(response.results.map((r) => [r.path, r]));
    for (const path of paths) {
      const item = byPath.get(path);
      if (!item) {
        throw new CofferClientError('bad_response', 200, 'the batch answer lacks a requested path');
      }
      if ('error' in item) {
        this.cache?.delete(cacheKey(path));
        const { code, message } = item.error;
        out.set(path, { path, ok: false, error: clientError(code, errorSpec(code)?.status ?? 0, message) });
      } else {
        const secret: SecretValue = {
          path: item.path,
          version: item.version,
          type: item.type,
          ...(item.valueBase64 !== undefined
            ? { valueBase64: item.valueBase64 }
            : { value: item.value ?? '' }),
          createdAt: item.createdAt,
        };
        this.cache?.set(cacheKey(path), secret, () => this.fetchSecret(path));
        out.set(path, { path, ok: true, secret: { ...secret } });
      }
    }
  }

  private invalidate(path: string): void {
    this.cache?.deleteWhere((key) => key.slice(0, key.lastIndexOf('#')) === path);
  }

  private async authHeaders(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: string | undefined,
    forceRefresh: boolean,
  ): Promise<Record<string, string>> {
    if (this.signer) return this.signer.sign(method, url, headers, body);
    const auth = this.options.auth;
    // Without auth (a client certificate is the identity) no Authorization header is sent.
    const token = auth?.token ?? (await auth?.tokenProvider?.({ forceRefresh }));
    return token ? { ...headers, authorization: `Bearer ${token}` } : headers;
  }

  private async send<T>(spec: RequestSpec): Promise<T> {
    const url = new URL(`${this.endpoint}${spec.absolute ? '' : this.prefix}${spec.route}`);
    for (const [k, v] of Object.entries(spec.query ?? {})) url.searchParams.set(k, v);
    const body = spec.body !== undefined ? JSON.stringify(spec.body) : undefined;
    const baseHeaders: Record<string, string> = {
      accept: 'application/json',
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(spec.headers ?? {}),
    };
    let forceRefresh = false;
    // What the last failed attempt allows: set just before it throws, read by the retry loop.
    let verdict: { retryable: boolean; retryAfterMs?: number } = { retryable: false };
    const attempt = async (): Promise<T> => {
      for (;;) {
        verdict = { retryable: false };
        // Signed (or the token fetched) per attempt: a retry carries a fresh date and credentials.
        const headers = await this.authHeaders(spec.method, url, baseHeaders, body, forceRefresh);
        let response: Response;
        let text: string;
        try {
          response = await this.fetchImpl(url, {
            method: spec.method,
            headers: { ...headers, 'user-agent': this.options.userAgent ?? 'coffer-client/0.1' },
            ...(body !== undefined ? { body } : {}),
            signal: AbortSignal.timeout(this.timeoutMs),
          });
          text = await response.text();
        } catch (err) {
          verdict = { retryable: spec.idempotent || neverSent(err) };
          throw networkError(err, this.endpoint);
        }
        if (response.ok) return parseJson<T>(text, response.status);
        const error = errorOf(text, response.status);
        if (
          error instanceof CofferUnauthenticatedError &&
          this.options.auth?.tokenProvider &&
          !forceRefresh
        ) {
          // Once per request, and not counted as an attempt: the provider's token may have expired.
          forceRefresh = true;
          continue;
        }
        // Only requests that are safe to repeat: a 429 or 503 from Coffer may come after part of the
        // work was done (a throttled audit write after the change), so a delete is never re-sent.
        const after = retryAfterMs(response.headers.get('retry-after'));
        verdict = {
          retryable: spec.idempotent && mayRetry(error.code, response.status),
          ...(after !== undefined ? { retryAfterMs: after } : {}),
        };
        throw error;
      }
    };
    return retry(attempt, {
      attempts: this.retry.maxAttempts,
      baseDelayMs: this.retry.baseDelayMs,
      maxDelayMs: this.retry.maxDelayMs,
      isRetryable: () => verdict.retryable,
      retryAfterMs: () => verdict.retryAfterMs,
    });
  }
}

function parseJson<T>(text: string, status: number): T {
  try {
    return (text === '' ? {} : JSON.parse(text)) as T;
  } catch {
    throw new CofferClientError('bad_response', status, `unexpected response (HTTP ${status})`);
  }
}

function errorOf(text: string, status: number): CofferClientError {
  let parsed: { error?: { code?: unknown; message?: unknown; requestId?: unknown; reason?: unknown } } = {};
  try {
    parsed = JSON.parse(text) ?? {};
  } catch {
    // Not JSON (a proxy's page, say): the status alone decides.
  }
  const e = parsed.error ?? {};
  const code =
    e.code === 'not_found' && e.reason === 'no_route'
      ? 'no_route'
      : typeof e.code === 'string'
        ? e.code
        : status === 429
          ? 'throttled'
          : 'http_error';
  const message = typeof e.message === 'string' ? e.message : `HTTP ${status}`;
  return clientError(code, status, message, typeof e.requestId === 'string' ? e.requestId : undefined);
}

function networkError(err: unknown, endpoint: string): CofferNetworkError {
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new CofferNetworkError('timeout', 0, `the Coffer server at ${endpoint} did not answer in time`);
  }
  return new CofferNetworkError('unreachable', 0, `cannot reach the Coffer server at ${endpoint}`);
}

/** Checks the `tls` option: a certificate with its key, an https endpoint, no custom fetch. */
function checkTls(options: ClientOptions, url: URL): ClientTlsOptions | undefined {
  const tls = options.tls;
  if (tls === undefined) return undefined;
  const invalid = (message: string) => new CofferClientError('invalid_config', 0, message);
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw invalid('tls takes a client certificate together with its key (cert and key)');
  }
  if (tls.cert === undefined && tls.ca === undefined)
    throw invalid('tls takes cert and key, or ca, or all three');
  if (url.protocol !== 'https:') throw invalid('tls needs an https endpoint');
  if (options.fetch) throw invalid('tls and a custom fetch do not go together (the fetch would not use tls)');
  return tls;
}

/** The https transport, loaded on the first request: clients without tls never load it. */
function lazyHttpsFetch(tls: ClientTlsOptions): typeof fetch {
  let transport: Promise<typeof fetch> | undefined;
  return async (input, init) => {
    transport ??= import('./tls.js').then((m) => m.httpsFetch(tls));
    return (await transport)(input, init);
  };
}

/** Creates a client. See {@link ClientOptions}. */
export function createClient(options: ClientOptions): CofferClient {
  return new CofferClient(options);
}
