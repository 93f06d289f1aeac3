/**
 * The one registry of Coffer error codes: for each code, the HTTP status the server answers with,
 * the client error class it becomes, the exit code of the `coffer` CLI, and whether a client may
 * send the request again. The server (lib/http/errors.ts), the client (errors.ts) and the CLI
 * (lib/cli/exit-codes.ts) all read this table; none keeps a map of its own.
 *
 * Every row must fill every column (`satisfies`), and `ErrorCode` is the set of rows: a
 * `CofferError` subclass or a `CofferClientError` built with a code that is not here does not
 * compile.
 *
 * This module is plain data with no imports, so the server can use it without loading the client.
 */

/** Exit codes of the `coffer` CLI (documented in docs/cli.md; scripts rely on them). */
export const EXIT = {
  ok: 0,
  /** Any other failure: server error, network, integrity. */
  error: 1,
  /** Bad command line. */
  usage: 2,
  /** No such secret or version. */
  notFound: 3,
  /** Not signed in, or the token was refused. */
  unauthenticated: 4,
  /** Denied by policy. */
  forbidden: 5,
  /** Check-and-set or other conflict. */
  conflict: 6,
  /** The server refused the input. */
  invalid: 7,
  /** Cannot reach the server, or it is unavailable (503/429). */
  unavailable: 8,
  /** A bundle cannot be opened: wrong identity, damaged or altered, or not a Coffer bundle. */
  bundle: 9,
} as const;

export type ExitName = keyof typeof EXIT;

/**
 * The client error class of a code, by name (errors.ts maps each name to its class; a name is
 * used here rather than the class so that this table imports nothing). `base` is the plain
 * `CofferClientError`, for which the HTTP status picks a more specific class when one fits.
 */
export type ClientErrorKind =
  | 'base'
  | 'invalid'
  | 'unauthenticated'
  | 'forbidden'
  | 'notFound'
  | 'conflict'
  | 'throttled'
  | 'unavailable'
  | 'integrity'
  | 'network';

export interface ErrorSpec {
  /**
   * The HTTP status the server answers with, or `null` for a code that never comes in an HTTP
   * answer (raised by the client or the CLI, or by the server before it serves).
   */
  readonly status: number | null;
  readonly client: ClientErrorKind;
  readonly exit: ExitName;
  /**
   * Whether a client may send a request that is safe to repeat again after this answer. `status`:
   * the code says nothing (a proxy's answer), so the HTTP status decides (429, 502, 503, 504).
   */
  readonly retry: boolean | 'status';
}

export const ERRORS = {
  // The server's codes (§8 of the HTTP contract; docs/api.md lists them).
  invalid_request: { status: 400, client: 'invalid', exit: 'invalid', retry: false },
  invalid_path: { status: 400, client: 'invalid', exit: 'invalid', retry: false },
  invalid_json: { status: 400, client: 'invalid', exit: 'invalid', retry: false },
  invalid_cursor: { status: 400, client: 'invalid', exit: 'invalid', retry: false },
  idempotency_key_reused: { status: 400, client: 'invalid', exit: 'invalid', retry: false },
  /** A text type (every type but `binary`) was given bytes that are not UTF-8. */
  value_not_text: { status: 400, client: 'invalid', exit: 'invalid', retry: false },
  /** The value does not fit its type: not a JSON object, a field missing or not a string, a bad PEM. */
  invalid_value: { status: 400, client: 'invalid', exit: 'invalid', retry: false },
  /** A keypair's public key, or a certificate, does not belong to the value's private key. */
  key_mismatch: { status: 400, client: 'invalid', exit: 'invalid', retry: false },
  /** `POST /v1/generate` with an `issuer` that is not a certificate secret holding a CA. */
  not_a_ca: { status: 400, client: 'invalid', exit: 'invalid', retry: false },
  /** A certificate asked of a CA for longer than the CA's metadata (or its own end) allows. */
  validity_too_long: { status: 400, client: 'invalid', exit: 'invalid', retry: false },
  /** A certificate asked of a CA with a name (CN or SAN) that none of its allowed patterns match. */
  name_not_allowed: { status: 403, client: 'forbidden', exit: 'forbidden', retry: false },
  /** A CA certificate asked of a CA that has limits: its key would sign outside them. */
  ca_not_allowed: { status: 403, client: 'forbidden', exit: 'forbidden', retry: false },
  unauthenticated: { status: 401, client: 'unauthenticated', exit: 'unauthenticated', retry: false },
  forbidden: { status: 403, client: 'forbidden', exit: 'forbidden', retry: false },
  /** The principal (or one of its groups, or its token's age) is on the revocation list. */
  revoked: { status: 403, client: 'forbidden', exit: 'forbidden', retry: false },
  not_found: { status: 404, client: 'notFound', exit: 'notFound', retry: false },
  method_not_allowed: { status: 405, client: 'base', exit: 'error', retry: false },
  cas_conflict: { status: 409, client: 'conflict', exit: 'conflict', retry: false },
  secret_deleted: { status: 409, client: 'conflict', exit: 'conflict', retry: false },
  /** A key operation the key's state forbids: retiring an active or still-referenced key, reverting with no previous key. */
  key_state_conflict: { status: 409, client: 'conflict', exit: 'conflict', retry: false },
  /** A root key outside the installation's allow-list (CDK context `rootKeyArns`). */
  root_key_not_allowed: { status: 400, client: 'invalid', exit: 'invalid', retry: false },
  /** A rotation policy named a rotator this installation does not call (not loopback, not allow-listed). */
  rotator_not_allowed: { status: 400, client: 'invalid', exit: 'invalid', retry: false },
  payload_too_large: { status: 413, client: 'invalid', exit: 'invalid', retry: false },
  value_too_large: { status: 413, client: 'invalid', exit: 'invalid', retry: false },
  unsupported_media_type: { status: 415, client: 'invalid', exit: 'invalid', retry: false },
  /**
   * The client closed the connection before its request body arrived (nginx's 499). Only the
   * audit record and the log see it: nobody is left to read the answer.
   */
  client_closed_request: { status: 499, client: 'network', exit: 'unavailable', retry: false },
  throttled: { status: 429, client: 'throttled', exit: 'unavailable', retry: true },
  integrity_error: { status: 500, client: 'integrity', exit: 'error', retry: false },
  internal: { status: 500, client: 'base', exit: 'error', retry: false },
  /**
   * An external rotator failed or timed out at a step: `current` is untouched, the pending version
   * stays (marked failed) and the next rotation resumes at that step.
   */
  rotation_step_failed: { status: 502, client: 'unavailable', exit: 'unavailable', retry: false },
  audit_unavailable: { status: 503, client: 'unavailable', exit: 'unavailable', retry: true },
  key_store_unavailable: { status: 503, client: 'unavailable', exit: 'unavailable', retry: true },
  storage_unavailable: { status: 503, client: 'unavailable', exit: 'unavailable', retry: true },
  identity_provider_unavailable: { status: 503, client: 'unavailable', exit: 'unavailable', retry: true },
  /** A write without `cas` lost the race to concurrent writers on every one of its bounded attempts. */
  write_contention: { status: 503, client: 'unavailable', exit: 'unavailable', retry: true },

  // Raised by the server at start or by admin tooling, never in an answer to a request.
  config_error: { status: null, client: 'base', exit: 'error', retry: false },
  invalid_policy_set: { status: null, client: 'base', exit: 'error', retry: false },

  // Raised by the client: no answer, an answer it cannot read, or a setting it refuses.
  unreachable: { status: null, client: 'network', exit: 'unavailable', retry: true },
  timeout: { status: null, client: 'network', exit: 'unavailable', retry: true },
  bad_response: { status: null, client: 'base', exit: 'error', retry: false },
  http_error: { status: null, client: 'base', exit: 'error', retry: 'status' },
  /**
   * The server answered 404 for the route itself (not for a secret): the endpoint is not the
   * API's base address. The server says so with `reason: "no_route"` beside `code: "not_found"`.
   */
  no_route: { status: null, client: 'notFound', exit: 'usage', retry: false },
  invalid_endpoint: { status: null, client: 'base', exit: 'usage', retry: false },
  invalid_config: { status: null, client: 'base', exit: 'usage', retry: false },
  credentials_unavailable: { status: null, client: 'base', exit: 'unauthenticated', retry: false },

  // Raised by the CLI.
  usage: { status: null, client: 'base', exit: 'usage', retry: false },
  invalid_recipient: { status: null, client: 'base', exit: 'usage', retry: false },
  invalid_template: { status: null, client: 'base', exit: 'usage', retry: false },
  file_exists: { status: null, client: 'base', exit: 'error', retry: false },
  write_failed: { status: null, client: 'base', exit: 'error', retry: false },
  not_json: { status: null, client: 'base', exit: 'invalid', retry: false },
  /** A field was asked of a secret that has no such field (`get --field`, `render`, `run --map`). */
  no_such_field: { status: null, client: 'base', exit: 'notFound', retry: false },
  /** `run` or `render` was given a binary secret, which cannot go into a variable or a text file. */
  binary_value: { status: null, client: 'base', exit: 'invalid', retry: false },
  identity_unreadable: { status: null, client: 'base', exit: 'bundle', retry: false },
  bundle_wrong_identity: { status: null, client: 'base', exit: 'bundle', retry: false },
  bundle_invalid: { status: null, client: 'base', exit: 'bundle', retry: false },
  login_failed: { status: null, client: 'base', exit: 'error', retry: false },
  audit_verification_failed: { status: null, client: 'base', exit: 'error', retry: false },
  policy_tests_failed: { status: null, client: 'base', exit: 'error', retry: false },
} as const satisfies Record<string, ErrorSpec>;

/** Every error code Coffer raises. Codes from a newer server may still arrive as plain strings. */
export type ErrorCode = keyof typeof ERRORS;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERRORS, code);
}

/** The row of a code, or undefined for a code this version does not know. */
export function errorSpec(code: string): ErrorSpec | undefined {
  return isErrorCode(code) ? ERRORS[code] : undefined;
}

/** The HTTP status the server answers a code with; 500 for any code without one. */
export function httpStatusOf(code: string): number {
  return errorSpec(code)?.status ?? 500;
}

/** The CLI's exit code for an error code; 1 (`error`) for a code this version does not know. */
export function exitCodeOf(code: string): number {
  return EXIT[errorSpec(code)?.exit ?? 'error'];
}

/** Statuses after which a request that is safe to repeat is retried when the code does not say. */
const RETRY_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504]);

/**
 * Whether a client may send a request that is safe to repeat again after this answer: the code
 * decides when it is known, else the status (an unknown code from a newer server, a proxy's page).
 */
export function mayRetry(code: string, status: number): boolean {
  const retry = errorSpec(code)?.retry ?? 'status';
  return retry === 'status' ? RETRY_STATUSES.has(status) : retry;
}
