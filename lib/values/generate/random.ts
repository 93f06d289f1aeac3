import { randomBytes } from 'node:crypto';

/** Where random bytes come from: the CSPRNG in production, a seeded stream in statistical tests. */
export type RandomSource = (size: number) => Uint8Array;

export const cryptoRandom: RandomSource = (size) => randomBytes(size);

/**
 * A uniformly random integer in [0, n), for 1 <= n <= 256, by rejection sampling: a byte at or
 * above the largest multiple of n that fits in a byte is thrown away and another is drawn. Taking
 * `byte % n` instead would favour the first `256 % n` values (for n = 94, characters 0-67 would
 * come up 3 times for every 2 of the others).
 */
export function uniformIndex(n: number, random: RandomSource): number {
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new RangeError('uniformIndex needs 1 <= n <= 256');
  const limit = 256 - (256 % n);
  for (;;) {
    const b = random(1)[0] as number;
    if (b < limit) return b % n;
  }
}

/** The same bytes as `random`, fetched `chunk` at a time: one CSPRNG call per chunk, not per byte. */
export function pooled(random: RandomSource, chunk = 512): RandomSource {
  let pool: Uint8Array = new Uint8Array(0);
  let at = 0;
  return (size) => {
    if (size > chunk) return random(size);
    if (pool.length - at < size) {
      pool = random(chunk);
      at = 0;
    }
    const out = pool.subarray(at, at + size);
    at += size;
    return out;
  };
}
