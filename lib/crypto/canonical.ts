import type { AttributeValue } from '@aws-sdk/client-dynamodb';

/**
 * Canonical, unambiguous byte encodings. Each field is written as a 4-byte big-endian length and
 * its UTF-8 bytes, after a domain tag, so that no two different inputs encode to the same bytes
 * (`("a/b", 1)` and `("a", "/b1")` differ) and one purpose's bytes never verify for another.
 */
export function encodeFields(domain: string, fields: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  for (const field of [domain, ...fields]) {
    const bytes = Buffer.from(field, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(bytes.length);
    parts.push(len, bytes);
  }
  return Buffer.concat(parts);
}

/**
 * Deterministic JSON: object keys sorted, no whitespace. Used for hashing audit records and
 * idempotency request fingerprints.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('non-finite number');
    return JSON.stringify(value) ?? 'null';
  }
  if (Array.isArray(value))
    return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** A DynamoDB attribute value as stored (the wire shape; typed so the encoding can be too). */
export type StoredAttribute = AttributeValue;

function lengthPrefixed(bytes: Uint8Array): Buffer[] {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length);
  return [len, Buffer.from(bytes)];
}

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function encodeAttribute(value: StoredAttribute, out: Buffer[]): void {
  const tag = (t: string) => out.push(Buffer.from(t, 'ascii'));
  const text = (s: string) => out.push(...lengthPrefixed(Buffer.from(s, 'utf8')));
  const count = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    out.push(b);
  };
  if (value.S !== undefined) {
    tag('S');
    text(value.S);
  } else if (value.N !== undefined) {
    tag('N');
    text(value.N);
  } else if (value.B !== undefined) {
    tag('B');
    out.push(...lengthPrefixed(value.B));
  } else if (value.BOOL !== undefined) {
    tag(value.BOOL ? 'T' : 'F');
  } else if (value.NULL !== undefined) {
    tag('0');
  } else if (value.M !== undefined) {
    tag('M');
    const names = Object.keys(value.M).sort(byCodeUnits);
    count(names.length);
    for (const name of names) {
      text(name);
      encodeAttribute(value.M[name] as StoredAttribute, out);
    }
  } else if (value.L !== undefined) {
    tag('L');
    count(value.L.length);
    for (const v of value.L) encodeAttribute(v, out);
  } else if (value.SS !== undefined || value.NS !== undefined) {
    // Sets have no order in DynamoDB: sorted, so the stored order never changes the MAC.
    tag(value.SS !== undefined ? 's' : 'n');
    const members = [...((value.SS ?? value.NS) as string[])].sort(byCodeUnits);
    count(members.length);
    for (const m of members) text(m);
  } else if (value.BS !== undefined) {
    tag('b');
    const members = value.BS.map((b) => Buffer.from(b)).sort(Buffer.compare);
    count(members.length);
    for (const m of members) out.push(...lengthPrefixed(m));
  } else {
    throw new TypeError('unsupported attribute type');
  }
}

/**
 * A canonical, typed encoding of a stored DynamoDB item for a MAC: the domain tag and `fields`
 * (as encodeFields), then every attribute but the `excluded` ones, by name in code-unit order,
 * each as its length-prefixed name and a typed value (a type tag, then length-prefixed content;
 * maps sorted by key, sets sorted). The string "1" and the number 1 encode differently, and an
 * attribute added later is covered without anyone listing it.
 */
export function encodeItem(
  domain: string,
  fields: readonly string[],
  item: Readonly<Record<string, StoredAttribute>>,
  excluded: ReadonlySet<string>,
): Buffer {
  const out: Buffer[] = [encodeFields(domain, fields)];
  const names = Object.keys(item)
    .filter((n) => !excluded.has(n))
    .sort(byCodeUnits);
  const n = Buffer.alloc(4);
  n.writeUInt32BE(names.length);
  out.push(n);
  for (const name of names) {
    out.push(...lengthPrefixed(Buffer.from(name, 'utf8')));
    encodeAttribute(item[name] as StoredAttribute, out);
  }
  return Buffer.concat(out);
}
