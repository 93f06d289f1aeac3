import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PolicySetError } from '../../lib/authz/policy-set.js';
import { DEFAULT_POLICY_DIR } from '../../lib/config.js';
import { LOCK_FILE } from '../../lib/local/lock.js';
import { startLocalServer } from '../../lib/local/server.js';
import { silentLogger } from '../../lib/log.js';

/*
 * The local server starts DynamoDB Local (a JVM, the longest step) while it loads and validates
 * the policies. An invalid policy set must still stop the start with nothing left running: the
 * Java started beside it is stopped and the data dir is free again.
 */

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

/** Processes whose command line names `text` (Linux: /proc). */
function processesNaming(text: string): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

describe('local server start', () => {
  it('when the policy set is invalid, it fails naming the file and leaves no DynamoDB Local and no lock behind', async () => {
    const policyDir = await mkdtemp(join(tmpdir(), 'coffer-start-policies-'));
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-start-data-'));
    dirs.push(policyDir, dataDir);
    await copyFile(join(DEFAULT_POLICY_DIR, 'schema.cedarschema'), join(policyDir, 'schema.cedarschema'));
    await writeFile(
      join(policyDir, 'broken.cedar'),
      '\n@id("broken") permit (principal, action == Coffer::Action::"raed", resource);\n',
    );

    const start = startLocalServer({ dataDir, port: 0, policyDir }, silentLogger);
    await expect(start).rejects.toBeInstanceOf(PolicySetError);
    await expect(start).rejects.toThrow(/broken\.cedar:2:\d+: .*raed/);

    expect(existsSync(join(dataDir, LOCK_FILE))).toBe(false);
    // SIGKILL is delivered at once, but the process table may lag a moment behind.
    const deadline = Date.now() + 10_000;
    while (processesNaming(join(dataDir, 'dynamodb')).length > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(processesNaming(join(dataDir, 'dynamodb'))).toEqual([]);
  }, 120_000);
});
