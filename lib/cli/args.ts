import { InvalidArgumentError } from 'commander';
import { ownRecord } from '../../packages/client/src/contract.js';

/** A commander argument parser for an integer from `min` to `max`. */
export const parseIntArg = (name: string, min: number, max: number) => (raw: string) => {
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`);
  }
  return Number(raw);
};

/** Parses `1h`, `30m`, `45s`, `2d` or plain seconds. */
export function parseDuration(raw: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(raw.trim());
  if (!m) throw new InvalidArgumentError('duration must look like 90s, 30m, 1h or 2d');
  const n = Number(m[1]);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
  const seconds = n * unit;
  if (seconds < 1 || seconds > 30 * 86_400) throw new InvalidArgumentError('duration must be from 1s to 30d');
  return seconds;
}

/** `--tag key=value` pairs as a map (a later pair for the same key wins). */
export function parseTags(pairs: readonly string[]): Record<string, string> {
  const tags = new Map<string, string>();
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    if (at <= 0) throw new InvalidArgumentError(`tag "${pair.slice(0, 64)}" must be key=value`);
    tags.set(pair.slice(0, at), pair.slice(at + 1));
  }
  // Keys are the user's: a prototype-less object, so `--tag __proto__=x` is a key like any other.
  return ownRecord(tags);
}
