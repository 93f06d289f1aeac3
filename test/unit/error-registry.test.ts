import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../lib/cli/exit-codes.js';
import { ERRORS, type ErrorSpec, isErrorCode, mayRetry } from '../../packages/client/src/error-registry.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Where error codes are raised or compared: the server, the client, the CLI and the handlers. */
const SOURCE_DIRS = ['lib', 'packages/client/src', 'functions', 'bin'];

async function sources(dir: string): Promise<string[]> {
  const entries = await readdir(join(ROOT, dir), { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && /\.(ts|js)$/.test(e.name) && !e.name.endsWith('.d.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/**
 * Code literals as the sources write them: `{ code: 'x' }`, `code = 'x'`, `err.code === 'x'`,
 * `new SomeError('x', …)` and `clientError('x', …)`. Node's own codes are upper case and
 * commander's contain a dot, so neither matches; `typeof e.code === 'string'` is a type test, and
 * commander's InvalidArgumentError and the certificate reader's DerError (never answered, always
 * turned into one refusal) take a message.
 */
const CODE_LITERALS = [
  /(?:^|[{,])\s*code\s*:\s*'([a-z][a-z0-9_]*)'/gm,
  /(?<!typeof [\w.?]*)\bcode\s*(?:=|[!=]==)\s*'([a-z][a-z0-9_]*)'/g,
  /\bnew (?!InvalidArgument|Der)\w+Error\(\s*'([a-z][a-z0-9_]*)'/g,
  /\bclientError\(\s*'([a-z][a-z0-9_]*)'/g,
];
/** Not Coffer codes: zod's issue code in `ctx.addIssue({ code: 'custom' })`. */
const NOT_COFFER = new Set(['custom']);

describe('the error registry', () => {
  it('keeps the HTTP status of every code the server answers', () => {
    const served = Object.fromEntries(
      Object.entries(ERRORS as Record<string, ErrorSpec>).flatMap(([code, spec]) =>
        spec.status === null ? [] : [[code, spec.status]],
      ),
    );
    expect(served).toEqual({
      invalid_request: 400,
      invalid_path: 400,
      invalid_json: 400,
      invalid_cursor: 400,
      idempotency_key_reused: 400,
      value_not_text: 400,
      invalid_value: 400,
      key_mismatch: 400,
      not_a_ca: 400,
      validity_too_long: 400,
      name_not_allowed: 403,
      ca_not_allowed: 403,
      unauthenticated: 401,
      forbidden: 403,
      revoked: 403,
      not_found: 404,
      method_not_allowed: 405,
      cas_conflict: 409,
      secret_deleted: 409,
      key_state_conflict: 409,
      root_key_not_allowed: 400,
      rotator_not_allowed: 400,
      payload_too_large: 413,
      value_too_large: 413,
      unsupported_media_type: 415,
      client_closed_request: 499,
      throttled: 429,
      integrity_error: 500,
      internal: 500,
      rotation_step_failed: 502,
      audit_unavailable: 503,
      key_store_unavailable: 503,
      storage_unavailable: 503,
      identity_provider_unavailable: 503,
      write_contention: 503,
    });
  });

  it('lets a client retry throttling and unavailability only, and decides by status for unknown codes', () => {
    const retried = Object.entries(ERRORS as Record<string, ErrorSpec>)
      .filter(([, spec]) => spec.retry === true)
      .map(([code]) => code)
      .sort();
    expect(retried).toEqual([
      'audit_unavailable',
      'identity_provider_unavailable',
      'key_store_unavailable',
      'storage_unavailable',
      'throttled',
      'timeout',
      'unreachable',
      'write_contention',
    ]);
    expect(mayRetry('http_error', 502)).toBe(true);
    expect(mayRetry('http_error', 500)).toBe(false);
    expect(mayRetry('some_new_code', 503)).toBe(true);
    expect(mayRetry('internal', 503)).toBe(false);
    for (const spec of Object.values(ERRORS as Record<string, ErrorSpec>)) {
      expect(Object.keys(EXIT)).toContain(spec.exit);
    }
  });

  it('when a source raises or compares an error code, that code is registered', async () => {
    const unregistered: string[] = [];
    let seen = 0;
    for (const dir of SOURCE_DIRS) {
      for (const file of await sources(dir)) {
        const text = await readFile(file, 'utf8');
        for (const pattern of CODE_LITERALS) {
          for (const match of text.matchAll(pattern)) {
            const code = match[1] as string;
            if (NOT_COFFER.has(code)) continue;
            seen++;
            if (!isErrorCode(code)) unregistered.push(`${relative(ROOT, file)}: ${code}`);
          }
        }
      }
    }
    // The scan must find the codes it guards, or a change of style would silently empty it.
    expect(seen).toBeGreaterThan(40);
    expect(unregistered).toEqual([]);
  });
});
