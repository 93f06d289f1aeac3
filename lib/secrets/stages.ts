import type { SecretHead, Stage, StageLabels } from '../store/records.js';

/*
 * Staging labels (docs/rotation.md). A head without labels (written before them) has `current` =
 * `latest` and nothing else. A plain write makes its version `current` and the old `current`
 * `previous` (like Secrets Manager's put-secret-value with the default stage), and abandons a
 * rotation's `pending` version (it stays as an ordinary version). Only a finished rotation moves
 * `current` otherwise, in the one head write that finishes it.
 */

/** The labels a head stands for, made explicit. */
export function labelsOf(head: SecretHead): StageLabels {
  return head.labels ?? { current: head.latest };
}

/** The version a plain read returns. */
export function currentOf(head: SecretHead): number {
  return labelsOf(head).current;
}

/** The version a stage names, or undefined when no version has it. */
export function versionOfStage(head: SecretHead, stage: Stage): number | undefined {
  return labelsOf(head)[stage];
}

/** After a plain write of `version`: it is current, the old current previous, no pending. */
export function labelsAfterWrite(previous: SecretHead | undefined, version: number): StageLabels {
  return previous ? { current: version, previous: currentOf(previous) } : { current: version };
}

/** After a rotation finished: pending is current, the old current previous. */
export function labelsAfterRotation(head: SecretHead, pending: number): StageLabels {
  return { current: pending, previous: currentOf(head) };
}

/**
 * The lowest version a head keeps: the max-versions window, lowered to keep every labeled
 * version (a labeled version is never pruned), never below what is already gone.
 */
export function keptFrom(window: number, labels: StageLabels, floor: number): number {
  const labeled = [labels.current, labels.previous, labels.pending].filter(
    (v): v is number => v !== undefined,
  );
  return Math.max(floor, Math.min(window, ...labeled));
}

/** Durations of rotation policies: `90s`, `15m`, `12h`, `30d`. */
const DURATION = /^([1-9][0-9]{0,6})([smhd])$/;
const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;
export const MIN_ROTATION_SECONDS = 60;
export const MAX_ROTATION_SECONDS = 3650 * 86_400;

/** Seconds a duration names, or undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text);
  if (!m) return undefined;
  return Number(m[1]) * UNIT_SECONDS[m[2] as keyof typeof UNIT_SECONDS];
}

/** A duration in the largest unit that divides it (`2592000` → `30d`). */
export function formatDuration(seconds: number): string {
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}
