// Generated from packages/client/src by `npm run build:client`. Do not edit.

// packages/client/src/index.ts
import { randomUUID } from "node:crypto";

// packages/client/src/error-registry.ts
var ERRORS = {
  // The server's codes (§8 of the HTTP contract; docs/api.md lists them).
  invalid_request: { status: 400, client: "invalid", exit: "invalid", retry: false },
  invalid_path: { status: 400, client: "invalid", exit: "invalid", retry: false },
  invalid_json: { status: 400, client: "invalid", exit: "invalid", retry: false },
  invalid_cursor: { status: 400, client: "invalid", exit: "invalid", retry: false },
  idempotency_key_reused: { status: 400, client: "invalid", exit: "invalid", retry: false },
  unauthenticated: { status: 401, client: "unauthenticated", exit: "unauthenticated", retry: false },
  forbidden: { status: 403, client: "forbidden", exit: "forbidden", retry: false },
  not_found: { status: 404, client: "notFound", exit: "notFound", retry: false },
  method_not_allowed: { status: 405, client: "base", exit: "error", retry: false },
  cas_conflict: { status: 409, client: "conflict", exit: "conflict", retry: false },
  secret_deleted: { status: 409, client: "conflict", exit: "conflict", retry: false },
  payload_too_large: { status: 413, client: "invalid", exit: "invalid", retry: false },
  value_too_large: { status: 413, client: "invalid", exit: "invalid", retry: false },
  unsupported_media_type: { status: 415, client: "invalid", exit: "invalid", retry: false },
  /**
   * The client closed the connection before its request body arrived (nginx's 499). Only the
   * audit record and the log see it: nobody is left to read the answer.
   */
  client_closed_request: { status: 499, client: "network", exit: "unavailable", retry: false },
  throttled: { status: 429, client: "throttled", exit: "unavailable", retry: true },
  integrity_error: { status: 500, client: "integrity", exit: "error", retry: false },
  internal: { status: 500, client: "base", exit: "error", retry: false },
  audit_unavailable: { status: 503, client: "unavailable", exit: "unavailable", retry: true },
  key_store_unavailable: { status: 503, client: "unavailable", exit: "unavailable", retry: true },
  storage_unavailable: { status: 503, client: "unavailable", exit: "unavailable", retry: true },
  /** A write without `cas` lost the race to concurrent writers on every one of its bounded attempts. */
  write_contention: { status: 503, client: "unavailable", exit: "unavailable", retry: true },
  // Raised by the server at start or by admin tooling, never in an answer to a request.
  config_error: { status: null, client: "base", exit: "error", retry: false },
  invalid_policy_set: { status: null, client: "base", exit: "error", retry: false },
  // Raised by the client: no answer, an answer it cannot read, or a setting it refuses.
  unreachable: { status: null, client: "network", exit: "unavailable", retry: true },
  timeout: { status: null, client: "network", exit: "unavailable", retry: true },
  bad_response: { status: null, client: "base", exit: "error", retry: false },
  http_error: { status: null, client: "base", exit: "error", retry: "status" },
  /**
   * The server answered 404 for the route itself (not for a secret): the endpoint is not the
   * API's base address. The server says so with `reason: "no_route"` beside `code: "not_found"`.
   */
  no_route: { status: null, client: "notFound", exit: "usage", retry: false },
  invalid_endpoint: { status: null, client: "base", exit: "usage", retry: false },
  invalid_config: { status: null, client: "base", exit: "usage", retry: false },
  credentials_unavailable: { status: null, client: "base", exit: "unauthenticated", retry: false },
  // Raised by the CLI.
  usage: { status: null, client: "base", exit: "usage", retry: false },
  invalid_recipient: { status: null, client: "base", exit: "usage", retry: false },
  invalid_template: { status: null, client: "base", exit: "usage", retry: false },
  file_exists: { status: null, client: "base", exit: "error", retry: false },
  write_failed: { status: null, client: "base", exit: "error", retry: false },
  not_json: { status: null, client: "base", exit: "invalid", retry: false },
  identity_unreadable: { status: null, client: "base", exit: "bundle", retry: false },
  bundle_wrong_identity: { status: null, client: "base", exit: "bundle", retry: false },
  bundle_invalid: { status: null, client: "base", exit: "bundle", retry: false },
  login_failed: { status: null, client: "base", exit: "error", retry: false },
  audit_verification_failed: { status: null, client: "base", exit: "error", retry: false },
  policy_tests_failed: { status: null, client: "base", exit: "error", retry: false }
};
function isErrorCode(code) {
  return Object.hasOwn(ERRORS, code);
}
function errorSpec(code) {
  return isErrorCode(code) ? ERRORS[code] : void 0;
}
var RETRY_STATUSES = /* @__PURE__ */ new Set([429, 502, 503, 504]);
function mayRetry(code, status) {
  const retry2 = errorSpec(code)?.retry ?? "status";
  return retry2 === "status" ? RETRY_STATUSES.has(status) : retry2;
}

// packages/client/src/errors.ts
var CofferClientError = class extends Error {
  constructor(code, status, message, requestId) {
    super(message);
    this.status = status;
    this.requestId = requestId;
    this.name = new.target.name;
    this.code = code;
  }
  status;
  requestId;
  /** The server's stable error code, or a client-side one (`unreachable`, `timeout`, `bad_response`). */
  code;
};
var CofferNotFoundError = class extends CofferClientError {
};
var CofferForbiddenError = class extends CofferClientError {
};
var CofferUnauthenticatedError = class extends CofferClientError {
};
var CofferConflictError = class extends CofferClientError {
};
var CofferInvalidRequestError = class extends CofferClientError {
};
var CofferThrottledError = class extends CofferClientError {
};
var CofferUnavailableError = class extends CofferClientError {
};
var CofferIntegrityError = class extends CofferClientError {
};
var CofferNetworkError = class extends CofferClientError {
};
var CLASS_OF = {
  base: CofferClientError,
  invalid: CofferInvalidRequestError,
  unauthenticated: CofferUnauthenticatedError,
  forbidden: CofferForbiddenError,
  notFound: CofferNotFoundError,
  conflict: CofferConflictError,
  throttled: CofferThrottledError,
  unavailable: CofferUnavailableError,
  integrity: CofferIntegrityError,
  network: CofferNetworkError
};
var KIND_OF_STATUS = (() => {
  const kinds = /* @__PURE__ */ new Map();
  const mixed = /* @__PURE__ */ new Set();
  for (const spec of Object.values(ERRORS)) {
    if (spec.status === null) continue;
    const seen = kinds.get(spec.status);
    if (seen !== void 0 && seen !== spec.client) mixed.add(spec.status);
    kinds.set(spec.status, spec.client);
  }
  for (const status of mixed) kinds.delete(status);
  return kinds;
})();
function clientError(code, status, message, requestId) {
  const kind = errorSpec(code)?.client ?? "base";
  const Class = CLASS_OF[kind === "base" ? KIND_OF_STATUS.get(status) ?? "base" : kind];
  return new Class(code, status, message, requestId);
}
function isTransient(err) {
  if (err instanceof CofferNetworkError || err instanceof CofferThrottledError) return true;
  return err instanceof CofferClientError && err.status >= 500 && !(err instanceof CofferIntegrityError);
}

// packages/client/src/cache.ts
var DEFAULT_CACHE_TTL_MS = 5 * 6e4;
var DEFAULT_CACHE_MAX_ENTRIES = 1e3;
var DEFAULT_MAX_STALE_MS = 15 * 6e4;
var SecretCache = class {
  constructor(options, clock, onBackgroundError) {
    this.clock = clock;
    this.onBackgroundError = onBackgroundError;
    this.ttl = positive(options.ttlMs, DEFAULT_CACHE_TTL_MS, "ttlMs");
    this.maxEntries = Math.floor(positive(options.maxEntries, DEFAULT_CACHE_MAX_ENTRIES, "maxEntries"));
    this.refreshAhead = Math.min(this.ttl, options.refreshAheadMs ?? this.ttl / 5);
    this.maxStale = Math.max(this.ttl, options.maxStaleMs ?? DEFAULT_MAX_STALE_MS);
  }
  clock;
  onBackgroundError;
  entries = /* @__PURE__ */ new Map();
  inflight = /* @__PURE__ */ new Map();
  ttl;
  maxEntries;
  refreshAhead;
  maxStale;
  get size() {
    return this.entries.size;
  }
  /**
   * The value for `key`: from memory while fresh (starting a background refresh when it is about
   * to expire), else from `load`. When an expired value cannot be refreshed because the service is
   * unavailable, the value is served until it is `maxStaleMs` old.
   */
  async get(key, load) {
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
  fresh(key) {
    const entry = this.entries.get(key);
    if (!entry || this.clock() - entry.fetchedAt >= this.ttl) return void 0;
    return this.touch(key)?.value;
  }
  /** A value within the stale window, for a caller whose own refresh failed transiently. */
  stale(key) {
    const entry = this.entries.get(key);
    if (!entry || this.clock() - entry.fetchedAt >= this.maxStale) return void 0;
    return entry.value;
  }
  /** Stores a value fetched by the caller (e.g. a batch), refreshed later with `load`. */
  set(key, value, load) {
    const previous = this.entries.get(key);
    if (previous?.timer) clearTimeout(previous.timer);
    this.entries.delete(key);
    const entry = { value, fetchedAt: this.clock(), used: false, load };
    this.entries.set(key, entry);
    this.schedule(key, entry, this.ttl - this.refreshAhead);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      this.delete(oldest);
    }
  }
  delete(key) {
    const entry = this.entries.get(key);
    if (entry?.timer) clearTimeout(entry.timer);
    this.entries.delete(key);
  }
  /** Drops every key for which `match` is true (e.g. all versions of a path that was written). */
  deleteWhere(match) {
    for (const key of [...this.entries.keys()]) if (match(key)) this.delete(key);
  }
  clear() {
    for (const key of [...this.entries.keys()]) this.delete(key);
  }
  touch(key) {
    const entry = this.entries.get(key);
    if (!entry) return void 0;
    this.entries.delete(key);
    this.entries.set(key, entry);
    entry.used = true;
    return entry;
  }
  refresh(key, load) {
    const running = this.inflight.get(key);
    if (running) return running;
    const promise = load().then(
      (value) => {
        this.set(key, value, load);
        return value;
      },
      (err) => {
        if (!isTransient(err)) this.delete(key);
        throw err;
      }
    );
    const tracked = promise.finally(() => this.inflight.delete(key));
    this.inflight.set(key, tracked);
    return tracked;
  }
  refreshInBackground(key, load) {
    this.refresh(key, load).catch(this.onBackgroundError);
  }
  /**
   * One timer per entry: when the refresh-ahead window opens, a value read since its last fetch is
   * refreshed; an unread one is dropped once it could no longer be served, so that secret values
   * do not linger in memory.
   */
  schedule(key, entry, delay) {
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
      Math.max(0, delay)
    );
    entry.timer.unref();
  }
};
function positive(value, fallback, name) {
  if (value === void 0) return fallback;
  if (!Number.isFinite(value) || value <= 0) throw new RangeError(`cache.${name} must be a positive number`);
  return value;
}

// packages/client/src/contract.ts
var PATH_MAX_BYTES = 512;
var PATH_MAX_SEGMENTS = 16;
var PATH_SEGMENT = /^[A-Za-z0-9._-]+$/;
var VALUE_MAX_BYTES = 64 * 1024;
var BODY_MAX_BYTES = 128 * 1024;
var TAGS_MAX = 50;
var VERSION_MAX = 2 ** 31;
var RECOVERY_DAYS = { min: 7, max: 30, default: 7 };
var MAX_VERSIONS = { min: 1, max: 1e3, default: 100 };
var BATCH_GET_MAX_PATHS = 20;
var LIST_LIMIT = { min: 1, max: 1e3, default: 100 };
var utf8 = new TextEncoder();
function isDotSegment(segment) {
  return segment === "." || segment === "..";
}
function pathProblem(path) {
  if (typeof path !== "string" || path.length === 0) return "path is empty";
  if (utf8.encode(path).length > PATH_MAX_BYTES) return `path is longer than ${PATH_MAX_BYTES} bytes`;
  const segments = path.split("/");
  if (segments.length > PATH_MAX_SEGMENTS) return `path has more than ${PATH_MAX_SEGMENTS} segments`;
  for (const segment of segments) {
    if (segment === "") return "path has an empty segment or a leading/trailing slash";
    if (isDotSegment(segment)) return 'path has a "." or ".." segment';
    if (!PATH_SEGMENT.test(segment)) return "path segments may only contain A-Z a-z 0-9 . _ -";
  }
  return void 0;
}

// packages/client/src/endpoint.ts
function parseEndpoint(endpoint) {
  let url;
  try {
    url = new URL(endpoint);
  } catch {
    throw new CofferClientError("invalid_endpoint", 0, "endpoint must be an http(s) URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new CofferClientError("invalid_endpoint", 0, "endpoint must be an http(s) URL");
  }
  return url;
}

// packages/client/src/failures.ts
var NETWORK_ERROR_CODES = /* @__PURE__ */ new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_SOCKET"
]);
var NEVER_SENT_CODES = /* @__PURE__ */ new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT"
]);
function networkErrorCode(err, depth = 0) {
  const e = err;
  if (e === null || typeof e !== "object" || depth > 3) return void 0;
  if (typeof e.code === "string" && NETWORK_ERROR_CODES.has(e.code)) return e.code;
  const nested = [e.cause, ...Array.isArray(e.errors) ? e.errors : []];
  for (const inner of nested) {
    const code = networkErrorCode(inner, depth + 1);
    if (code) return code;
  }
  return void 0;
}
function neverSent(err) {
  const code = networkErrorCode(err);
  return code !== void 0 && NEVER_SENT_CODES.has(code);
}

// packages/client/src/retry.ts
function retryPolicy(options = {}) {
  const maxAttempts = options.maxAttempts ?? 3;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 10) {
    throw new RangeError("retry.maxAttempts must be an integer from 1 to 10");
  }
  return {
    maxAttempts,
    baseDelayMs: Math.max(0, options.baseDelayMs ?? 100),
    maxDelayMs: Math.max(0, options.maxDelayMs ?? 2e3)
  };
}
function backoffDelay(policy, retry2, retryAfterMs2) {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry2);
  const jittered = Math.random() * ceiling;
  return retryAfterMs2 !== void 0 ? Math.min(policy.maxDelayMs, Math.max(jittered, retryAfterMs2)) : jittered;
}
async function retry(fn, options) {
  const wait = options.sleep ?? sleep;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const retrying = attempt < options.attempts && options.isRetryable(err, attempt);
      options.onFailure?.(err, attempt, retrying);
      if (!retrying) throw err;
      await wait(backoffDelay(options, attempt - 1, options.retryAfterMs?.(err)));
    }
  }
}
function retryAfterMs(header) {
  if (header === null || !/^\d{1,4}$/.test(header.trim())) return void 0;
  return Number(header.trim()) * 1e3;
}
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// packages/client/src/sigv4.ts
import { Sha256 } from "@aws-crypto/sha256-js";
import { HttpRequest } from "@smithy/protocol-http";
import { SignatureV4 } from "@smithy/signature-v4";
var EXECUTE_API_HOST = /\.execute-api\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$/;
function regionOfEndpoint(endpoint) {
  return EXECUTE_API_HOST.exec(endpoint.hostname)?.[1];
}
var defaultChain;
function defaultCredentials() {
  defaultChain ??= import("@aws-sdk/credential-provider-node").then(
    (m) => m.defaultProvider()
  );
  return defaultChain;
}
var SigV4RequestSigner = class {
  signer;
  constructor(options, endpoint) {
    const region = options.region ?? regionOfEndpoint(endpoint);
    if (!region) {
      throw new CofferClientError(
        "invalid_config",
        0,
        "auth.iam.region is required for an endpoint that is not an execute-api host name"
      );
    }
    const credentials = options.credentials;
    this.signer = new SignatureV4({
      service: options.service ?? "execute-api",
      region,
      sha256: Sha256,
      credentials: typeof credentials === "function" ? credentials : credentials ? async () => credentials : async () => (await defaultCredentials())()
    });
  }
  /**
   * The headers to send: the given ones plus `authorization`, `x-amz-date`,
   * `x-amz-content-sha256` (the body's hash) and, for temporary credentials,
   * `x-amz-security-token`. `host` is signed and left for fetch to send from the URL.
   */
  async sign(method, url, headers, body) {
    const query = {};
    for (const [k, v] of url.searchParams) query[k] = v;
    const request = new HttpRequest({
      method,
      protocol: url.protocol,
      hostname: url.hostname,
      ...url.port ? { port: Number(url.port) } : {},
      path: url.pathname,
      query,
      headers: { ...headers, host: url.host },
      ...body !== void 0 ? { body } : {}
    });
    let signed;
    try {
      signed = await this.signer.sign(request);
    } catch {
      throw new CofferClientError(
        "credentials_unavailable",
        0,
        "no AWS credentials available to sign the request"
      );
    }
    const { host: _host, ...out } = signed.headers;
    return out;
  }
};

// packages/client/src/index.ts
var DEFAULT_TIMEOUT_MS = 1e4;
function encodePath(path) {
  const segments = path.split("/");
  if (segments.some(isDotSegment)) {
    throw new CofferInvalidRequestError("invalid_path", 400, 'path has a "." or ".." segment');
  }
  return segments.map(encodeURIComponent).join("/");
}
var cacheKey = (path, version) => `${path}#${version ?? "latest"}`;
var CofferClient = class {
  constructor(options) {
    this.options = options;
    const url = parseEndpoint(options.endpoint);
    this.endpoint = options.endpoint.replace(/\/+$/, "");
    const auth = options.auth;
    const kinds = [auth.token !== void 0, auth.tokenProvider !== void 0, auth.iam !== void 0];
    if (kinds.filter(Boolean).length !== 1) {
      throw new CofferClientError(
        "invalid_config",
        0,
        "auth takes exactly one of token, tokenProvider or iam"
      );
    }
    this.signer = options.auth.iam ? new SigV4RequestSigner(options.auth.iam, url) : void 0;
    this.prefix = this.signer ? "/iam/v1" : "/v1";
    this.fetchImpl = options.fetch ?? fetch;
    this.retry = retryPolicy(options.retry);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const onBackgroundError = options.onBackgroundError;
    this.cache = options.cache === false ? void 0 : new SecretCache(
      options.cache ?? {},
      options.clock ?? Date.now,
      (err) => onBackgroundError?.(err)
    );
  }
  options;
  endpoint;
  prefix;
  fetchImpl;
  retry;
  timeoutMs;
  cache;
  signer;
  /** Values held by the cache right now. */
  get cachedValues() {
    return this.cache?.size ?? 0;
  }
  health() {
    return this.send({ method: "GET", route: "/v1/health", idempotent: true, absolute: true });
  }
  whoami() {
    return this.send({ method: "GET", route: "/whoami", idempotent: true });
  }
  /**
   * A secret's latest value (or `version`). Served from the cache while fresh: no request at all.
   * `noCache` reads through to the server (and refreshes the cache).
   */
  async get(path, options = {}) {
    const load = () => this.fetchSecret(path, options.version);
    if (!this.cache) return load();
    const key = cacheKey(path, options.version);
    if (options.noCache) this.cache.delete(key);
    return { ...await this.cache.get(key, load) };
  }
  /**
   * Latest values of many secrets in one request per 20 paths (`POST /v1/batch-get`), each path
   * authorized on its own: the answer holds a value or an error per path, in the order asked.
   * Fresh cached values are used without asking; fetched ones are cached.
   */
  async batchGet(paths) {
    const out = /* @__PURE__ */ new Map();
    const wanted = [];
    for (const path of new Set(paths)) {
      const key = cacheKey(path);
      if (this.cache?.fresh(key) !== void 0) {
        const secret = await this.cache.get(key, () => this.fetchSecret(path));
        out.set(path, { path, ok: true, secret: { ...secret } });
      } else {
        wanted.push(path);
      }
    }
    const chunks = [];
    for (let i = 0; i < wanted.length; i += BATCH_GET_MAX_PATHS) {
      chunks.push(wanted.slice(i, i + BATCH_GET_MAX_PATHS));
    }
    await Promise.all(chunks.map((chunk) => this.fetchBatch(chunk, out)));
    return paths.map((path) => out.get(path));
  }
  /** Writes a new version. Retried safely: the request carries an Idempotency-Key. */
  async put(path, value, options = {}) {
    const { idempotencyKey, ...rest } = options;
    try {
      return await this.send({
        method: "PUT",
        route: `/secrets/${encodePath(path)}`,
        body: { value, ...rest },
        headers: { "idempotency-key": idempotencyKey ?? randomUUID() },
        idempotent: true
      });
    } finally {
      this.invalidate(path);
    }
  }
  /** Soft delete: restorable for `recoveryDays` (7-30, default 7). */
  async delete(path, options = {}) {
    try {
      return await this.send({
        method: "DELETE",
        route: `/secrets/${encodePath(path)}`,
        ...options.recoveryDays !== void 0 ? { query: { recoveryDays: String(options.recoveryDays) } } : {},
        idempotent: false
      });
    } finally {
      this.invalidate(path);
    }
  }
  async restore(path) {
    try {
      return await this.send({ method: "POST", route: `/restore/${encodePath(path)}`, idempotent: false });
    } finally {
      this.invalidate(path);
    }
  }
  /**
   * Removes a soft-deleted secret at once, before its recovery window ends, so that its path can be
   * used again. Needs Cedar `admin` on the secret; a secret that is not deleted is `not_found`.
   */
  async purge(path) {
    try {
      return await this.send({ method: "POST", route: `/purge/${encodePath(path)}`, idempotent: false });
    } finally {
      this.invalidate(path);
    }
  }
  /** Irreversibly erases versions of a secret. */
  async destroy(path, versions) {
    try {
      return await this.send({
        method: "POST",
        route: `/destroy/${encodePath(path)}`,
        body: { versions },
        idempotent: false
      });
    } finally {
      this.invalidate(path);
    }
  }
  /** Metadata and the version list of a secret (no values). */
  async history(path) {
    return this.send({ method: "GET", route: `/meta/${encodePath(path)}`, idempotent: true });
  }
  async patchMetadata(path, patch) {
    return this.send({ method: "PATCH", route: `/meta/${encodePath(path)}`, body: patch, idempotent: false });
  }
  /** One page of a listing. */
  listPage(prefix, options = {}) {
    const query = { prefix };
    if (options.delimiter) query.delimiter = options.delimiter;
    if (options.limit) query.limit = String(options.limit);
    if (options.cursor) query.cursor = options.cursor;
    return this.send({ method: "GET", route: "/list", query, idempotent: true });
  }
  /**
   * Every page of a listing, following cursors. Every page but the last holds `limit` entries
   * (the server skips what the caller may not list).
   *
   * @example
   * for await (const page of coffer.list('team-a/')) for (const item of page.items) console.log(item.path);
   */
  async *list(prefix, options = {}) {
    let cursor;
    do {
      const page = await this.listPage(prefix, { ...options, ...cursor ? { cursor } : {} });
      yield page;
      cursor = page.cursor;
    } while (cursor);
  }
  /** Forgets every cached value (and stops the cache's timers). */
  clearCache() {
    this.cache?.clear();
  }
  async fetchSecret(path, version) {
    return this.send({
      method: "GET",
      route: `/secrets/${encodePath(path)}`,
      ...version !== void 0 ? { query: { version: String(version) } } : {},
      idempotent: true
    });
  }
  async fetchBatch(paths, out) {
    let response;
    try {
      response = await this.send({ method: "POST", route: "/batch-get", body: { paths }, idempotent: true });
    } catch (err) {
      const stale = paths.map((path) => this.cache?.stale(cacheKey(path)));
      if (!isTransient(err) || stale.some((s) => s === void 0)) throw err;
      paths.forEach((path, i) => {
        out.set(path, { path, ok: true, secret: { ...stale[i] } });
      });
      return;
    }
    const byPath = new Map(response.results.map((r) => [r.path, r]));
    for (const path of paths) {
      const item = byPath.get(path);
      if (!item) {
        throw new CofferClientError("bad_response", 200, "the batch answer lacks a requested path");
      }
      if ("error" in item) {
        this.cache?.delete(cacheKey(path));
        const { code, message } = item.error;
        out.set(path, { path, ok: false, error: clientError(code, errorSpec(code)?.status ?? 0, message) });
      } else {
        const secret = {
          path: item.path,
          version: item.version,
          value: item.value,
          createdAt: item.createdAt
        };
        this.cache?.set(cacheKey(path), secret, () => this.fetchSecret(path));
        out.set(path, { path, ok: true, secret: { ...secret } });
      }
    }
  }
  invalidate(path) {
    this.cache?.deleteWhere((key) => key.slice(0, key.lastIndexOf("#")) === path);
  }
  async authHeaders(method, url, headers, body, forceRefresh) {
    if (this.signer) return this.signer.sign(method, url, headers, body);
    const auth = this.options.auth;
    const token = auth.token ?? await auth.tokenProvider?.({ forceRefresh });
    return token ? { ...headers, authorization: `Bearer ${token}` } : headers;
  }
  async send(spec) {
    const url = new URL(`${this.endpoint}${spec.absolute ? "" : this.prefix}${spec.route}`);
    for (const [k, v] of Object.entries(spec.query ?? {})) url.searchParams.set(k, v);
    const body = spec.body !== void 0 ? JSON.stringify(spec.body) : void 0;
    const baseHeaders = {
      accept: "application/json",
      ...body !== void 0 ? { "content-type": "application/json" } : {},
      ...spec.headers ?? {}
    };
    let forceRefresh = false;
    let verdict = { retryable: false };
    const attempt = async () => {
      for (; ; ) {
        verdict = { retryable: false };
        const headers = await this.authHeaders(spec.method, url, baseHeaders, body, forceRefresh);
        let response;
        let text;
        try {
          response = await this.fetchImpl(url, {
            method: spec.method,
            headers: { ...headers, "user-agent": this.options.userAgent ?? "coffer-client/0.1" },
            ...body !== void 0 ? { body } : {},
            signal: AbortSignal.timeout(this.timeoutMs)
          });
          text = await response.text();
        } catch (err) {
          verdict = { retryable: spec.idempotent || neverSent(err) };
          throw networkError(err, this.endpoint);
        }
        if (response.ok) return parseJson(text, response.status);
        const error = errorOf(text, response.status);
        if (error instanceof CofferUnauthenticatedError && this.options.auth.tokenProvider && !forceRefresh) {
          forceRefresh = true;
          continue;
        }
        const after = retryAfterMs(response.headers.get("retry-after"));
        verdict = {
          retryable: spec.idempotent && mayRetry(error.code, response.status),
          ...after !== void 0 ? { retryAfterMs: after } : {}
        };
        throw error;
      }
    };
    return retry(attempt, {
      attempts: this.retry.maxAttempts,
      baseDelayMs: this.retry.baseDelayMs,
      maxDelayMs: this.retry.maxDelayMs,
      isRetryable: () => verdict.retryable,
      retryAfterMs: () => verdict.retryAfterMs
    });
  }
};
function parseJson(text, status) {
  try {
    return text === "" ? {} : JSON.parse(text);
  } catch {
    throw new CofferClientError("bad_response", status, `unexpected response (HTTP ${status})`);
  }
}
function errorOf(text, status) {
  let parsed = {};
  try {
    parsed = JSON.parse(text) ?? {};
  } catch {
  }
  const e = parsed.error ?? {};
  const code = e.code === "not_found" && e.reason === "no_route" ? "no_route" : typeof e.code === "string" ? e.code : status === 429 ? "throttled" : "http_error";
  const message = typeof e.message === "string" ? e.message : `HTTP ${status}`;
  return clientError(code, status, message, typeof e.requestId === "string" ? e.requestId : void 0);
}
function networkError(err, endpoint) {
  const name = err?.name;
  if (name === "TimeoutError" || name === "AbortError") {
    return new CofferNetworkError("timeout", 0, `the Coffer server at ${endpoint} did not answer in time`);
  }
  return new CofferNetworkError("unreachable", 0, `cannot reach the Coffer server at ${endpoint}`);
}
function createClient(options) {
  return new CofferClient(options);
}
export {
  BATCH_GET_MAX_PATHS,
  BODY_MAX_BYTES,
  CofferClient,
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
  DEFAULT_CACHE_MAX_ENTRIES,
  DEFAULT_CACHE_TTL_MS,
  DEFAULT_MAX_STALE_MS,
  LIST_LIMIT,
  MAX_VERSIONS,
  PATH_MAX_BYTES,
  PATH_MAX_SEGMENTS,
  RECOVERY_DAYS,
  TAGS_MAX,
  VALUE_MAX_BYTES,
  clientError,
  createClient,
  isTransient,
  pathProblem
};
