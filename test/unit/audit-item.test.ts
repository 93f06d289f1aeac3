import { marshall } from '@aws-sdk/util-dynamodb';
import { describe, expect, it } from 'vitest';
import { auditItem } from '../../lib/audit/writer.js';

const KEY = { pk: 'C#c1', sk: 'R#0000000042' };
const generic = (body: object) => marshall({ ...body, ...KEY }, { removeUndefinedValues: true });

/** A seeded generator, so that a failure names a case that can be run again. */
function generator(seed: number) {
  let s = seed;
  const rnd = (n: number) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s % n;
  };
  const text = () => ['', 'a', 'é', '日本', '\u{1F600}', 'x'.repeat(rnd(300)), 'null', '0'][rnd(8)] as string;
  const value = (depth: number): unknown => {
    switch (rnd(depth > 3 ? 6 : 9)) {
      case 0:
        return text();
      case 1:
        return rnd(2) === 0 ? rnd(1_000_000) - 500_000 : (rnd(1000) - 500) / 7;
      case 2:
        return rnd(2) === 0;
      case 3:
        return null;
      case 4:
        return undefined;
      case 5:
        return [0, -0, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 1e-7][rnd(5)];
      case 6:
      case 7:
        return Object.fromEntries(Array.from({ length: rnd(5) }, () => [text() || 'k', value(depth + 1)]));
      default:
        return Array.from({ length: rnd(5) }, () => value(depth + 1));
    }
  };
  return () => Object.fromEntries(Array.from({ length: 1 + rnd(12) }, (_, i) => [`f${i}`, value(0)]));
}

describe('the audit item written for every record', () => {
  it('is the item the SDK marshaller makes, for the values records hold', () => {
    const record = {
      v: 1,
      type: 'request',
      chain: 'c1',
      seq: 42,
      prev: 'ab'.repeat(32),
      principal: { type: 'User', id: 'dev:ada' },
      identity: null,
      policyIds: ['admins'],
      policyErrors: [],
      hmac: {},
      head: { rev: 3, mac: 'm' },
      keyIds: undefined,
      status: 200,
      error: null,
      decision: 'allow',
      userAgent: '',
    };
    expect(auditItem(KEY, record)).toEqual(generic(record));
    const next = generator(7);
    for (let n = 0; n < 2000; n++) {
      const body = next();
      expect(auditItem(KEY, body), JSON.stringify(body)).toEqual(generic(body));
    }
  });

  it('refuses what the SDK marshaller refuses, and converts what records never hold as it does', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.MAX_SAFE_INTEGER + 2]) {
      expect(() => generic({ bad })).toThrow();
      expect(() => auditItem(KEY, { bad })).toThrow();
    }
    const odd = { set: new Set(['a', 'b']), bytes: new Uint8Array([1, 2]), nested: [{ n: new Set([1]) }] };
    expect(auditItem(KEY, odd)).toEqual(generic(odd));
  });
});
