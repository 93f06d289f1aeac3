/** Exit codes of the `coffer` CLI (documented in README). */
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

/**
 * Ends the CLI with this exit code and no message of its own: `coffer run` passes on its child's
 * code (126 not runnable, 127 not found, 128 + n killed by signal n, as shells do).
 */
export class PassThroughExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
    this.name = 'PassThroughExit';
  }
}

const BY_CODE: Record<string, number> = {
  not_found: EXIT.notFound,
  unauthenticated: EXIT.unauthenticated,
  forbidden: EXIT.forbidden,
  cas_conflict: EXIT.conflict,
  secret_deleted: EXIT.conflict,
  invalid_request: EXIT.invalid,
  invalid_path: EXIT.invalid,
  invalid_json: EXIT.invalid,
  invalid_cursor: EXIT.invalid,
  idempotency_key_reused: EXIT.invalid,
  payload_too_large: EXIT.invalid,
  value_too_large: EXIT.invalid,
  unsupported_media_type: EXIT.invalid,
  unreachable: EXIT.unavailable,
  throttled: EXIT.unavailable,
  audit_unavailable: EXIT.unavailable,
  key_store_unavailable: EXIT.unavailable,
  storage_unavailable: EXIT.unavailable,
  timeout: EXIT.unavailable,
  credentials_unavailable: EXIT.unauthenticated,
  invalid_config: EXIT.usage,
  invalid_recipient: EXIT.usage,
  invalid_template: EXIT.usage,
  file_exists: EXIT.error,
  write_failed: EXIT.error,
  not_json: EXIT.invalid,
  identity_unreadable: EXIT.bundle,
  bundle_wrong_identity: EXIT.bundle,
  bundle_invalid: EXIT.bundle,
};

export function exitCodeOf(code: string): number {
  return BY_CODE[code] ?? EXIT.error;
}
