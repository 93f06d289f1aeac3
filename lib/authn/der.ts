/**
 * A minimal DER reader for the parts of an X.509 certificate that identify a client: the issuer and
 * subject names, serial, validity, SANs and extended key usage. node:crypto's X509Certificate
 * prints names and SANs as text whose escaping is not specified well enough to build ids from
 * (a value holding a newline or a comma could imitate another name), so identities come from the
 * DER itself. Anything malformed throws DerError.
 */
export class DerError extends Error {
  override readonly name = 'DerError';
}

export interface Tlv {
  readonly tag: number;
  /** The whole element (tag, length, content). */
  readonly raw: Buffer;
  readonly content: Buffer;
}

/** Reads the element at `offset`; returns it and the offset after it. */
export function readTlv(buf: Buffer, offset = 0): { tlv: Tlv; next: number } {
  if (offset + 2 > buf.length) throw new DerError('truncated');
  const tag = buf[offset] as number;
  // Multi-byte tags do not occur in certificates.
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag number');
  let length = buf[offset + 1] as number;
  let start = offset + 2;
  if (length & 0x80) {
    const bytes = length & 0x7f;
    // DER: the shortest form, at most 4 length bytes here (certificates are far smaller).
    if (bytes === 0 || bytes > 4 || start + bytes > buf.length) throw new DerError('bad length');
    length = 0;
    for (let i = 0; i < bytes; i++) length = length * 256 + (buf[start + i] as number);
    if (length < 0x80) throw new DerError('non-minimal length');
    start += bytes;
  }
  const end = start + length;
  if (end > buf.length) throw new DerError('truncated');
  return { tlv: { tag, raw: buf.subarray(offset, end), content: buf.subarray(start, end) }, next: end };
}

/** The elements inside a constructed element. */
export function children(tlv: Tlv): Tlv[] {
  if ((tlv.tag & 0x20) === 0) throw new DerError('not constructed');
  const out: Tlv[] = [];
  for (let at = 0; at < tlv.content.length; ) {
    const { tlv: child, next } = readTlv(tlv.content, at);
    out.push(child);
    at = next;
  }
  return out;
}

export function expectTag(tlv: Tlv | undefined, tag: number): Tlv {
  if (!tlv || tlv.tag !== tag) throw new DerError(`expected tag 0x${tag.toString(16)}`);
  return tlv;
}

export const TAG = {
  boolean: 0x01,
  integer: 0x02,
  octetString: 0x04,
  oid: 0x06,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

export function decodeOid(tlv: Tlv): string {
  expectTag(tlv, TAG.oid);
  const bytes = tlv.content;
  if (bytes.length === 0) throw new DerError('empty oid');
  const arcs: number[] = [];
  let value = 0;
  for (const byte of bytes) {
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER) throw new DerError('oid arc too large');
    if ((byte & 0x80) === 0) {
      arcs.push(value);
      value = 0;
    }
  }
  if ((bytes[bytes.length - 1] as number) & 0x80) throw new DerError('truncated oid');
  const first = arcs.shift() as number;
  const top = first < 80 ? Math.floor(first / 40) : 2;
  return [top, first - top * 40, ...arcs].join('.');
}

/** A UTCTime or GeneralizedTime (the forms RFC 5280 allows: UTC, whole seconds). */
export function decodeTime(tlv: Tlv): Date {
  const text = tlv.content.toString('latin1');
  const m =
    tlv.tag === TAG.utcTime
      ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
      : tlv.tag === TAG.generalizedTime
        ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(text)
        : null;
  if (!m) throw new DerError('bad time');
  let year = Number(m[1]);
  // RFC 5280 4.1.2.5.1: UTCTime years 50-99 are 19xx, 00-49 are 20xx.
  if (tlv.tag === TAG.utcTime) year += year >= 50 ? 1900 : 2000;
  const ms = Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  if (Number.isNaN(ms)) throw new DerError('bad time');
  return new Date(ms);
}

/** The text of a directory string, or undefined for a type that is not a string. */
export function decodeString(tlv: Tlv): string | undefined {
  const c = tlv.content;
  switch (tlv.tag) {
    case 0x0c: // UTF8String
      return new TextDecoder('utf-8', { fatal: true }).decode(c);
    case 0x12: // NumericString
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x1a: // VisibleString
    case 0x14: // TeletexString: treated as Latin-1, as OpenSSL does
      return c.toString('latin1');
    case 0x1e: {
      // BMPString: UTF-16 big-endian
      if (c.length % 2 !== 0) throw new DerError('bad BMPString');
      const swapped = Buffer.from(c);
      swapped.swap16();
      return swapped.toString('utf16le');
    }
    case 0x1c: {
      // UniversalString: UTF-32 big-endian
      if (c.length % 4 !== 0) throw new DerError('bad UniversalString');
      let out = '';
      for (let i = 0; i < c.length; i += 4) out += String.fromCodePoint(c.readUInt32BE(i));
      return out;
    }
    default:
      return undefined;
  }
}
