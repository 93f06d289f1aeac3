import { randomBytes } from 'node:crypto';

/** Byte values for round-trip tests of binary secrets (issue 16). */

/** 256 bytes holding every byte value once, in a random order. */
function everyByte(): Buffer {
  const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  for (let i = bytes.length - 1; i > 0; i--) {
    const j = randomBytes(1)[0] as number;
    const k = j % (i + 1);
    [bytes[i], bytes[k]] = [bytes[k] as number, bytes[i] as number];
  }
  return bytes;
}

/** 64 KiB of random bytes that hold every byte value. */
function full(): Buffer {
  const bytes = randomBytes(64 * 1024);
  everyByte().copy(bytes, 1000);
  return bytes;
}

/** Sizes 0, 1 (three awkward bytes) and 64 KiB, and all 256 byte values. */
export const BYTE_CASES: readonly (readonly [string, () => Buffer])[] = [
  ['empty', () => Buffer.alloc(0)],
  ['one byte 0x00', () => Buffer.from([0x00])],
  ['one byte 0x80', () => Buffer.from([0x80])],
  ['one byte 0xff', () => Buffer.from([0xff])],
  ['every byte value', everyByte],
  ['64 KiB', full],
];
