import { describe, expect, it } from 'vitest';
import { matchesFilterPattern } from '../support/cloudwatch-filter.js';

/* The test matcher for CloudWatch JSON filter patterns must itself tell matches from misses. */

describe('the CloudWatch filter pattern test matcher', () => {
  const line = JSON.stringify({ audit: 'coffer.v1', type: 'request', decision: 'deny', status: 403 });

  it('compares strings exactly, or with * wildcards, and numbers by value', () => {
    expect(matchesFilterPattern('{ $.decision = "deny" }', line)).toBe(true);
    expect(matchesFilterPattern('{ $.decision = "allow" }', line)).toBe(false);
    expect(matchesFilterPattern('{ $.audit = "coffer.*" }', line)).toBe(true);
    expect(matchesFilterPattern('{ $.status = 403 }', line)).toBe(true);
    expect(matchesFilterPattern('{ $.status >= 500 }', line)).toBe(false);
    // A string never equals a number, and a missing field matches nothing.
    expect(matchesFilterPattern('{ $.status = "403" }', line)).toBe(false);
    expect(matchesFilterPattern('{ $.code = "x" }', line)).toBe(false);
    expect(matchesFilterPattern('{ $.decision != "allow" }', line)).toBe(true);
  });

  it('combines with && and || under parentheses, && binding tighter', () => {
    expect(matchesFilterPattern('{ $.type = "request" && ($.decision = "x" || $.status = 403) }', line)).toBe(
      true,
    );
    expect(matchesFilterPattern('{ ($.type = "request" && $.decision = "x") || $.status = 401 }', line)).toBe(
      false,
    );
    expect(
      matchesFilterPattern('{ $.status = 401 || $.type = "request" && $.decision = "deny" }', line),
    ).toBe(true);
  });

  it('never matches a line that is not JSON, and refuses patterns it cannot read', () => {
    expect(matchesFilterPattern('{ $.status = 403 }', 'START RequestId: 1 Version: $LATEST')).toBe(false);
    expect(() => matchesFilterPattern('"audit write failed"', line)).toThrow(/JSON filter patterns/);
    expect(() => matchesFilterPattern('{ $.status IS NULL }', line)).toThrow();
  });
});
