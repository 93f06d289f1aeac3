/**
 * Escaping for the values that go into workload ids (claim values, certificate DNs).
 *
 * A workload id is `:`-separated segments (`gha:octo-org/app:production`,
 * `cert:<issuer DN>:<subject DN>`). A value must never be able to add a segment, nor to look like
 * another value once escaped, or a token with `environment: "prod:x"` could take the id of another
 * mapping's principal. So every character outside printable ASCII, and `%`, `:`, `{` and `}`, is
 * percent-encoded (its UTF-8 bytes, `%XX` upper case). The mapping is one to one: decoding gives
 * the value back, and a rendered id splits at its raw `:` into exactly the template's segments.
 */
const UNSAFE = /[^\x20-\x7e]|[%:{}]/u;

/**
 * Percent-encodes a value for one segment of a workload id.
 *
 * @example
 * escapeIdValue('octo-org/app'); // 'octo-org/app'
 * escapeIdValue('prod:x');       // 'prod%3Ax'
 */
export function escapeIdValue(value: string): string {
  if (!UNSAFE.test(value)) return value;
  let out = '';
  for (const char of value) {
    if (!UNSAFE.test(char)) {
      out += char;
      continue;
    }
    for (const byte of Buffer.from(char, 'utf8'))
      out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
