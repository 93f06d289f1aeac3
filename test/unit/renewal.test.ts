import { describe, expect, it } from 'vitest';
import {
  effectiveRenewBefore,
  nextAtAfterWrite,
  nextRotationAt,
  parseRenewBefore,
} from '../../lib/secrets/renewal.js';

const DAY = 86_400_000;
const now = new Date('2026-06-01T00:00:00.000Z');
const cert = (days: number, from = now) => ({
  notBefore: from.toISOString(),
  notAfter: new Date(from.getTime() + days * DAY).toISOString(),
});
const iso = (ms: number) => new Date(ms).toISOString();

describe('renewal of certificates before expiry', () => {
  it('when no renewBefore is set, it is 30 days, but at most half the validity', () => {
    expect(effectiveRenewBefore({}, cert(90))).toBe(30 * 86_400);
    expect(effectiveRenewBefore({}, cert(10))).toBe(5 * 86_400);
  });

  it('when renewBefore is set, it is used while shorter than the validity, else half the validity', () => {
    expect(effectiveRenewBefore({ renewBeforeSeconds: 20 * 86_400 }, cert(30))).toBe(20 * 86_400);
    expect(effectiveRenewBefore({ renewBeforeSeconds: 40 * 86_400 }, cert(30))).toBe(15 * 86_400);
  });

  it('when the renewal time comes before every, it is the next rotation; a passed one is now', () => {
    expect(nextRotationAt(now, { everySeconds: 365 * 86_400 }, cert(90))).toBe(iso(now.getTime() + 60 * DAY));
    expect(nextRotationAt(now, { everySeconds: 7 * 86_400 }, cert(90))).toBe(iso(now.getTime() + 7 * DAY));
    const old = cert(40, new Date(now.getTime() - 35 * DAY));
    expect(nextRotationAt(now, { everySeconds: 365 * 86_400 }, old)).toBe(now.toISOString());
    expect(nextRotationAt(now, { everySeconds: 86_400 }, undefined)).toBe(iso(now.getTime() + DAY));
  });

  it('when a certificate is written by hand, the schedule moves forward only if it must, and an overdue one stays', () => {
    const rotation = { everySeconds: 365 * 86_400, nextAt: iso(now.getTime() + 100 * DAY) };
    expect(nextAtAfterWrite(rotation, cert(60), now)).toBe(iso(now.getTime() + 30 * DAY));
    expect(nextAtAfterWrite(rotation, cert(365), now)).toBe(rotation.nextAt);
    const overdue = { ...rotation, nextAt: iso(now.getTime() - DAY) };
    expect(nextAtAfterWrite(overdue, cert(60), now)).toBe(overdue.nextAt);
    expect(nextAtAfterWrite(rotation, undefined, now)).toBe(rotation.nextAt);
  });

  it('when renewBefore is not for a certificate, under 1h or not under the validity, it is refused', () => {
    expect(parseRenewBefore(undefined, 'password', undefined)).toBeUndefined();
    expect(parseRenewBefore('10d', 'certificate', 30)).toBe(10 * 86_400);
    expect(() => parseRenewBefore('10d', 'password', undefined)).toThrow('certificates only');
    expect(() => parseRenewBefore('59m', 'certificate', 30)).toThrow('at least 1h');
    expect(() => parseRenewBefore('30d', 'certificate', 30)).toThrow('shorter than the certificate validity');
  });
});
