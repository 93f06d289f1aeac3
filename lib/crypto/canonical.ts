import type { AttributeValue } from '@aws-sdk/client-dynamodb';

/**
 * Bytes written into one growing buffer: the encodings below run for every MAC of every request,
 * and a Buffer per length prefix and per field was most of their cost.
 */
class ByteWriter {
  #buf = Buffer.alloc(512);
  #len = 0;

  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const grown = Buffer.alloc(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(grown, 0, 0, this.#len);
    this.#buf = grown;
  }

  /** One ASCII character. */
  tag(code: number): void {
    this.#room(1);
    this.#buf[this.#len++] = code;
  }

  u32(n: number): void {
    this.#room(4);
    this.#buf.writeUInt32BE(n, this.#len);
    this.#len += 4;
  }

  /** A 4-byte big-endian length, then the UTF-8 bytes. */
  text(s: string): void {
    const n = Buffer.byteLength(s, 'utf8');
    this.u32(n);
    this.#room(n);
    this.#len += this.#buf.write(s, this.#len, 'utf8');
  }

  /** A 4-byte big-endian length, then the bytes. */
  bytes(b: Uint8Array): void {
    this.u32(b.length);
    this.#room(b.length);
    this.#buf.set(b, this.#len);
    this.#len += b.length;
  }

  done(): Buffer {
    return this.#buf.subarray(0, this.#len);
  }
}

/**
 * Canonical, unambiguous byte encodings. Each field is written as a 4-byte big-endian length and
 * its UTF-8 bytes, after a domain tag, so that no two different inputs encode to the same bytes
 * (`("a/b", 1)` and `("a", "/b1")` differ) and one purpose's bytes never verify for another.
 */
export function encodeFields(domain: string, fields: readonly string[]): Buffer {
  const out = new ByteWriter();
  writeFields(out, domain, fields);
  return out.done();
}

function writeFields(out: ByteWriter, domain: string, fields: readonly string[]): void {
  out.text(domain);
  for (const field of fields) out.text(field);
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
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      out += `${i > 0 ? ',' : ''}${canonicalJson(v === undefined ? null : v)}`;
    }
    return `${out}]`;
  }
  const record = value as Record<string, unknown>;
  let out = '{';
  for (const key of Object.keys(record).sort(byCodeUnits)) {
    const v = record[key];
    if (v === undefined) continue;
    out += `${out.length > 1 ? ',' : ''}${JSON.stringify(key)}:${canonicalJson(v)}`;
  }
  return `${out}}`;
}

/** A DynamoDB attribute value as stored (the wire shape; typed so the encoding can be too). */
export type StoredAttribute = AttributeValue;

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

const TAG = {
  S: 0x53,
  N: 0x4e,
  B: 0x42,
  T: 0x54,
  F: 0x46,
  NULL: 0x30,
  M: 0x4d,
  L: 0x4c,
  SS: 0x73,
  NS: 0x6e,
  BS: 0x62,
} as const;

function encodeAttribute(value: StoredAttribute, out: ByteWriter): void {
  if (value.S !== undefined) {
    out.tag(TAG.S);
    out.text(value.S);
  } else if (value.N !== undefined) {
    out.tag(TAG.N);
    out.text(value.N);
  } else if (value.B !== undefined) {
    out.tag(TAG.B);
    out.bytes(value.B);
  } else if (value.BOOL !== undefined) {
    out.tag(value.BOOL ? TAG.T : TAG.F);
  } else if (value.NULL !== undefined) {
    out.tag(TAG.NULL);
  } else if (value.M !== undefined) {
    out.tag(TAG.M);
    const names = Object.keys(value.M).sort(byCodeUnits);
    out.u32(names.length);
    for (const name of names) {
      out.text(name);
      encodeAttribute(value.M[name] as StoredAttribute, out);
    }
  } else if (value.L !== undefined) {
    out.tag(TAG.L);
    out.u32(value.L.length);
    for (const v of value.L) encodeAttribute(v, out);
  } else if (value.SS !== undefined || value.NS !== undefined) {
    // Sets have no order in DynamoDB: sorted, so the stored order never changes the MAC.
    out.tag(value.SS !== undefined ? TAG.SS : TAG.NS);
    const members = [...((value.SS ?? value.NS) as string[])].sort(byCodeUnits);
    out.u32(members.length);
    for (const m of members) out.text(m);
  } else if (value.BS !== undefined) {
    out.tag(TAG.BS);
    const members = value.BS.map((b) => Buffer.from(b)).sort(Buffer.compare);
    out.u32(members.length);
    for (const m of members) out.bytes(m);
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
  const out = new ByteWriter();
  writeFields(out, domain, fields);
  const names = Object.keys(item)
    .filter((n) => !excluded.has(n))
    .sort(byCodeUnits);
  out.u32(names.length);
  for (const name of names) {
    out.text(name);
    encodeAttribute(item[name] as StoredAttribute, out);
  }
  return out.done();
}
