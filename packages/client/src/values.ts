import type { SecretValue } from './contract.js';
import { CofferClientError } from './errors.js';

/*
 * A read secret's value as bytes, text or one field. Pure functions of a `SecretValue` (what
 * `get` and `batchGet` return), so that a warm `get` stays a lookup and the bytes are made only
 * when asked for. Errors name the path and the field, never the value.
 */

const utf8 = new TextEncoder();

/**
 * The value's bytes, exactly as stored: a `binary` value decoded, any other the UTF-8 of its text.
 * A new array on every call (changing it changes nothing cached).
 *
 * @example await writeFile('key.der', secretBytes(await coffer.get('tls/der-key')));
 */
export function secretBytes(secret: SecretValue): Uint8Array {
  if (secret.valueBase64 !== undefined) return new Uint8Array(Buffer.from(secret.valueBase64, 'base64'));
  return utf8.encode(secret.value ?? '');
}

/**
 * The value as text. A `binary` value has none: `binary_value` (read it with `secretBytes`).
 *
 * @example const password = secretText(await coffer.get('team-a/db/password'));
 */
export function secretText(secret: SecretValue): string {
  if (secret.value === undefined) {
    throw new CofferClientError(
      'binary_value',
      0,
      `${secret.path} is a binary secret: it has no text to give (read its bytes with coffer get or getBytes)`,
    );
  }
  return secret.value;
}

/**
 * One field of a value that is a JSON object (types `json`, `keypair`, `certificate`, or text
 * holding one). A string field is returned as it is, any other as JSON. A value that is not a
 * JSON object is `not_json`, an absent field `no_such_field`.
 *
 * @example const pem = secretField(await coffer.get('tls/api'), 'certificate');
 */
export function secretField(secret: SecretValue, field: string): string {
  const text = secretText(secret);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CofferClientError(
      'not_json',
      0,
      `${secret.path}: not a JSON object, so it has no field "${field.slice(0, 100)}"`,
    );
  }
  if (!Object.hasOwn(parsed, field)) {
    throw new CofferClientError('no_such_field', 0, `${secret.path}: no field "${field.slice(0, 100)}"`);
  }
  const v = (parsed as Record<string, unknown>)[field];
  return typeof v === 'string' ? v : JSON.stringify(v);
}
