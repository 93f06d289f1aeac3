import { describe, expect, it } from 'vitest';
import { encodeItem } from '../../lib/crypto/canonical.js';

const none = new Set<string>();

describe('encodeItem (the canonical encoding head MACs are made over)', () => {
  it('when attributes or map keys come in another order, the bytes are the same', () => {
    const a = encodeItem('d', ['x'], { b: { N: '1' }, a: { M: { y: { S: '2' }, x: { S: '1' } } } }, none);
    const b = encodeItem('d', ['x'], { a: { M: { x: { S: '1' }, y: { S: '2' } } }, b: { N: '1' } }, none);
    expect(a.equals(b)).toBe(true);
    const s1 = encodeItem('d', [], { s: { SS: ['b', 'a'] } }, none);
    const s2 = encodeItem('d', [], { s: { SS: ['a', 'b'] } }, none);
    expect(s1.equals(s2)).toBe(true);
  });

  it('when a value changes type, an attribute is added, or fields shift between name and value, the bytes differ', () => {
    const base = encodeItem('d', ['x'], { a: { S: '1' } }, none);
    for (const other of [
      encodeItem('d', ['x'], { a: { N: '1' } }, none),
      encodeItem('d', ['x'], { a: { S: '1' }, b: { NULL: true } }, none),
      encodeItem('d', ['x'], { a: { B: Buffer.from('1') } }, none),
      encodeItem('d', ['y'], { a: { S: '1' } }, none),
      encodeItem('e', ['x'], { a: { S: '1' } }, none),
      encodeItem('d', ['x'], { a1: { S: '' } }, none),
      encodeItem('d', ['x'], { a: { L: [{ S: '1' }] } }, none),
    ]) {
      expect(other.equals(base)).toBe(false);
    }
  });

  it('when an attribute is excluded, its value does not change the bytes', () => {
    const a = encodeItem('d', [], { a: { S: '1' }, mac: { B: Buffer.from('x') } }, new Set(['mac']));
    const b = encodeItem('d', [], { a: { S: '1' } }, new Set(['mac']));
    expect(a.equals(b)).toBe(true);
  });
});
