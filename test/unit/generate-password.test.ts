import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  generatePassword,
  PASSWORD_CLASSES,
  type PasswordClass,
  passwordAlphabet,
  resolvePasswordPolicy,
} from '../../lib/values/generate/password.js';
import { type RandomSource, uniformIndex } from '../../lib/values/generate/random.js';

/** A reproducible byte stream (SHA-256 in counter mode): the statistics below see fixed draws. */
function seeded(seed: string): RandomSource {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (size) => {
    while (pool.length < size) {
      const block = createHash('sha256').update(`${seed}:${counter++}`).digest();
      pool = Buffer.concat([pool, block]);
    }
    const out = pool.subarray(0, size);
    pool = pool.subarray(size);
    return out;
  };
}

const DRAWS = 10_000;
/**
 * Pearson's chi-square over the alphabet's characters. Under uniform draws it has k-1 degrees of
 * freedom (93 for the default 94 characters): mean 93, standard deviation about 13.6. The bound
 * is the mean plus 6 standard deviations, which uniform draws pass (the seed is fixed, so the test
 * cannot flake) and a modulo-biased generator fails by more than an order of magnitude.
 */
function chiSquare(counts: Map<string, number>, alphabet: readonly string[]): number {
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const expected = total / alphabet.length;
  return alphabet.reduce((sum, ch) => sum + ((counts.get(ch) ?? 0) - expected) ** 2 / expected, 0);
}
const bound = (k: number) => k - 1 + 6 * Math.sqrt(2 * (k - 1));

function counts(passwords: readonly string[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of passwords) for (const ch of p) out.set(ch, (out.get(ch) ?? 0) + 1);
  return out;
}

const classOf = (ch: string): PasswordClass =>
  (Object.keys(PASSWORD_CLASSES) as PasswordClass[]).find((c) =>
    PASSWORD_CLASSES[c].includes(ch),
  ) as PasswordClass;

describe('generatePassword', () => {
  it('when given a policy, every password meets it: length, only allowed classes, each class present, no excluded character', () => {
    const policies = [
      {},
      { length: 8 },
      { length: 12, classes: ['lower', 'digits'] as PasswordClass[] },
      { length: 40, classes: ['upper', 'symbols'] as PasswordClass[], exclude: '"\'`\\' },
      { length: 16, exclude: 'O0Il1|' },
    ];
    const random = seeded('policy');
    for (const policy of policies) {
      const resolved = resolvePasswordPolicy(policy);
      for (let i = 0; i < 500; i++) {
        const pw = generatePassword(policy, random);
        expect(pw).toHaveLength(resolved.length);
        const classes = new Set([...pw].map(classOf));
        expect([...classes].sort()).toEqual([...resolved.classes].sort());
        for (const ch of resolved.exclude) expect(pw).not.toContain(ch);
      }
    }
  });

  it('when drawing 10,000 passwords, no character and no class is favoured (chi-square at a fixed seed)', () => {
    const policy = resolvePasswordPolicy({ length: 64 });
    const { chars } = passwordAlphabet(policy);
    const random = seeded('uniform');
    const passwords = Array.from({ length: DRAWS }, () => generatePassword(policy, random));
    const byChar = counts(passwords);
    expect(chiSquare(byChar, chars)).toBeLessThan(bound(chars.length));
    // Each class gets its share of characters (its size over the alphabet's), within 2% relative.
    const total = DRAWS * 64;
    for (const [name, members] of Object.entries(PASSWORD_CLASSES)) {
      const got = [...members].reduce((n, ch) => n + (byChar.get(ch) ?? 0), 0);
      const share = members.length / chars.length;
      expect(Math.abs(got / total - share) / share, name).toBeLessThan(0.02);
    }
  });

  it('when the alphabet is shrunk by exclusions, the remaining characters are still drawn evenly', () => {
    const policy = resolvePasswordPolicy({ length: 24, classes: ['lower', 'digits'], exclude: 'lo01' });
    const { chars } = passwordAlphabet(policy);
    const random = seeded('excluded');
    const passwords = Array.from({ length: DRAWS }, () => generatePassword(policy, random));
    expect(chiSquare(counts(passwords), chars)).toBeLessThan(bound(chars.length));
  });

  it('when characters are picked with `byte % n` (modulo bias), the same statistic fails: the test can fail', () => {
    const policy = resolvePasswordPolicy({ length: 64 });
    const { chars } = passwordAlphabet(policy);
    const random = seeded('uniform');
    const biased = Array.from({ length: DRAWS }, () =>
      Array.from({ length: 64 }, () => chars[(random(1)[0] as number) % chars.length]).join(''),
    );
    expect(chiSquare(counts(biased), chars)).toBeGreaterThan(10 * bound(chars.length));
  });

  it('when a policy cannot be met, it is refused with invalid_request', () => {
    expect(() => resolvePasswordPolicy({ length: 4 })).toThrow(
      expect.objectContaining({ code: 'invalid_request' }),
    );
    expect(() => resolvePasswordPolicy({ length: 5000 })).toThrow(/length/);
    expect(() => resolvePasswordPolicy({ classes: [] })).toThrow(/at least one/);
    expect(() => resolvePasswordPolicy({ classes: ['digits'], exclude: '0123456789' })).toThrow(
      /no character/,
    );
    expect(() => resolvePasswordPolicy({ classes: ['emoji' as PasswordClass] })).toThrow(/unknown/);
  });
});

describe('uniformIndex', () => {
  it('when n does not divide 256, it rejects the bytes past the last full multiple instead of wrapping', () => {
    // 94 * 2 = 188: bytes 188-255 must be thrown away, so this stream yields 5 % 94 from its third byte.
    const bytes = [200, 255, 5];
    const random: RandomSource = (size) => Uint8Array.from({ length: size }, () => bytes.shift() ?? 0);
    expect(uniformIndex(94, random)).toBe(5);
  });

  it('covers every index exactly as often over all 256 byte values it accepts', () => {
    for (const n of [1, 2, 3, 10, 94, 255, 256]) {
      const hits = new Array<number>(n).fill(0);
      const limit = 256 - (256 % n);
      for (let b = 0; b < limit; b++) {
        const i = uniformIndex(n, () => Uint8Array.of(b));
        hits[i] = (hits[i] ?? 0) + 1;
      }
      expect(new Set(hits).size, `n=${n}`).toBe(1);
    }
  });
});
