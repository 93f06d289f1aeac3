import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../lib/errors.js';
import { assertJava } from '../../lib/local/dynamodb-local.js';

const dir = mkdtempSync(join(tmpdir(), 'coffer-java-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the Java check before DynamoDB Local starts', () => {
  it('when no PATH entry holds an executable java, it fails with one line saying what to install', () => {
    writeFileSync(join(dir, 'java'), '#!/bin/sh\n', { mode: 0o644 });
    for (const PATH of ['', '/nonexistent', dir]) {
      expect(() => assertJava({ PATH }), PATH).toThrow(ConfigError);
      expect(() => assertJava({ PATH }), PATH).toThrow(
        /^Java not found: DynamoDB Local needs a Java 17\+ runtime on PATH/,
      );
    }
  });

  it('when a PATH entry holds an executable java, it passes without running it', () => {
    // A java that would fail if it ran: the check must only look.
    writeFileSync(join(dir, 'java'), '#!/bin/sh\nexit 1\n');
    chmodSync(join(dir, 'java'), 0o755);
    expect(() => assertJava({ PATH: `/nonexistent:${dir}` })).not.toThrow();
  });
});
