import { InvalidRequestError } from '../errors.js';
import type { RotationState } from '../store/records.js';
import { parseDuration } from './stages.js';

/*
 * When a certificate with a rotation policy is due (docs/rotation.md, "Renewal before expiry").
 * A certificate is renewed `renewBefore` ahead of its notAfter, or after `every`, whichever comes
 * first. The due index holds that one time (`nextAt`), so the schedule stays one Query.
 */

/** The default lead time: 30 days, like the usual `--expiring 30d` warning. */
export const DEFAULT_RENEW_BEFORE_SECONDS = 30 * 86_400;
/** The shortest lead time accepted: less would race the 15-minute schedule. */
export const MIN_RENEW_BEFORE_SECONDS = 3600;

/** The validity window of a certificate, as the head's type info keeps it. */
export interface Validity {
  readonly notBefore: string;
  readonly notAfter: string;
}

/**
 * The lead time in force for a certificate: the policy's own `renewBefore` while it is shorter
 * than the certificate's validity, else half the validity; without one, 30 days but at most half
 * the validity. So a short-lived certificate (or one rewritten with a shorter validity than the
 * policy was set for) is renewed once per half-life rather than on every run of the schedule.
 */
export function effectiveRenewBefore(
  rotation: Pick<RotationState, 'renewBeforeSeconds'>,
  cert: Validity,
): number {
  const lifetime = Math.max(0, (Date.parse(cert.notAfter) - Date.parse(cert.notBefore)) / 1000);
  const half = Math.floor(lifetime / 2);
  const own = rotation.renewBeforeSeconds;
  if (own !== undefined) return own < lifetime ? own : half;
  return Math.min(DEFAULT_RENEW_BEFORE_SECONDS, half);
}

/**
 * When the next rotation is due after `from`: `every` later, or, for a certificate, its renewal
 * time if that comes sooner (and `from` itself when that time has passed).
 */
export function nextRotationAt(
  from: Date,
  rotation: Pick<RotationState, 'everySeconds' | 'renewBeforeSeconds'>,
  cert: Validity | undefined,
): string {
  let at = from.getTime() + rotation.everySeconds * 1000;
  if (cert) {
    const renewAt = Date.parse(cert.notAfter) - effectiveRenewBefore(rotation, cert) * 1000;
    at = Math.max(from.getTime(), Math.min(at, renewAt));
  }
  return new Date(at).toISOString();
}

/**
 * `renewBefore` of a rotation request, in seconds: only for certificates, from 1h and shorter than
 * the validity the generator issues (else the renewed certificate would be due at once).
 */
export function parseRenewBefore(
  text: string | undefined,
  type: string | undefined,
  validityDays: number | undefined,
): number | undefined {
  if (text === undefined) return undefined;
  if (type !== 'certificate') throw new InvalidRequestError('renewBefore applies to certificates only');
  const seconds = parseDuration(text);
  if (seconds === undefined || seconds < MIN_RENEW_BEFORE_SECONDS) {
    throw new InvalidRequestError('renewBefore must be a duration of at least 1h, such as 30d');
  }
  if (validityDays !== undefined && seconds >= validityDays * 86_400) {
    throw new InvalidRequestError('renewBefore must be shorter than the certificate validity');
  }
  return seconds;
}

/**
 * A later `nextAt` is kept only if the certificate written since does not need renewing sooner
 * (a plain write keeps the schedule, but a certificate closer to its end moves it forward).
 */
export function nextAtAfterWrite(rotation: RotationState, cert: Validity | undefined, now: Date): string {
  if (!cert) return rotation.nextAt;
  const renewAt = Date.parse(cert.notAfter) - effectiveRenewBefore(rotation, cert) * 1000;
  // An overdue rotation stays overdue as it was; otherwise the sooner of the two, never the past.
  const at = Math.min(Date.parse(rotation.nextAt), Math.max(now.getTime(), renewAt));
  return new Date(at).toISOString();
}
