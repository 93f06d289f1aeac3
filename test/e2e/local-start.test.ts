import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { PolicySetError } from '../../lib/authz/policy-set.js';
import { DEFAULT_POLICY_DIR } from '../../lib/config.js';
import { freePort } from '../../lib/local/dynamodb-local.js';
import { LOCK_FILE } from '../../lib/local/lock.js';
import { startLocalServer } from '../../lib/local/server.js';
import { silentLogger } from '../../lib/log.js';

const ROOT = join(import.meta.dirname, '../..');
const run = promisify(execFile);

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

/** No lock on the data dir and no DynamoDB Local on its files: a failed start left nothing. */
async function expectNothingLeft(dataDir: string): Promise<void> {
  expect(existsSync(join(dataDir, LOCK_FILE))).toBe(false);
  // SIGKILL is delivered at once, but the process table may lag a moment behind.
  const deadline = Date.now() + 10_000;
  while (processesNaming(join(dataDir, 'dynamodb')).length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(processesNaming(join(dataDir, 'dynamodb'))).toEqual([]);
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

    await expectNothingLeft(dataDir);
  }, 120_000);

  it('runs DynamoDB Local with the quick-start compiler, and stops it with the server', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-start-data-'));
    dirs.push(dataDir);
    const server = await startLocalServer({ dataDir, port: 0, policyDir: DEFAULT_POLICY_DIR }, silentLogger);
    const pid = server.dynamodbPid();
    try {
      expect(pid).toBeTypeOf('number');
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      expect(argv).toContain('-XX:TieredStopAtLevel=1');
      expect((await fetch(`${server.url}/v1/health`)).status).toBe(200);
    } finally {
      await server.stop();
    }
    expect(processesNaming(join(dataDir, 'dynamodb'))).toEqual([]);
  }, 120_000);

  it('loads nothing heavy before it spawns Java: the server command imports the server, the SDK and Cedar only after the spawn', async () => {
    // The modules `coffer server` evaluates before its prestart (lock, port check, Java spawn):
    // the command's action and what it imports statically. The server module, the AWS SDK, Cedar,
    // Hono and the config parser come after, by dynamic import, while the JVM starts.
    const log = join(await mkdtemp(join(tmpdir(), 'coffer-start-modules-')), 'modules.log');
    dirs.push(join(log, '..'));
    await run(
      process.execPath,
      [
        '--import',
        join(ROOT, 'test/support/module-log.mjs'),
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `await import(${JSON.stringify(join(ROOT, 'lib/cli/actions/server.ts'))});`,
      ],
      { cwd: ROOT, env: { ...process.env, COFFER_MODULE_LOG: log } },
    );
    const loaded = (await readFile(log, 'utf8')).split('\n');
    const ours = loaded
      .filter((u) => u.startsWith('file:') && !u.includes(`${sep}node_modules${sep}`))
      .map((u) => u.slice(u.indexOf('/lib/') + 1));
    expect(ours).toContain('lib/local/prestart.ts');
    expect(ours).toContain('lib/local/dynamodb-local-process.ts');
    expect(ours).not.toContain('lib/local/server.ts');
    expect(ours).not.toContain('lib/local/dynamodb-local.ts');
    expect(ours).not.toContain('lib/config-file.ts');
    const heavy = ['@aws-sdk/', '@cedar-policy/', 'hono', 'zod', 'jose', 'yaml', '@smithy/'];
    const packages = loaded.filter((u) => u.includes(`${sep}node_modules${sep}`) && !u.includes('tsx'));
    expect(packages.filter((u) => heavy.some((h) => u.includes(`${sep}node_modules${sep}${h}`)))).toEqual([]);
  }, 120_000);

  it('when COFFER_CONFIG is invalid, `coffer server` fails with one line and leaves no DynamoDB Local and no lock behind', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-start-data-'));
    dirs.push(dataDir);
    const config = join(dataDir, 'coffer.yaml');
    await writeFile(config, 'issuers: [\n');
    const failed = await run(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'bin/coffer.ts'), 'server', '--dev'],
      {
        cwd: ROOT,
        env: {
          ...process.env,
          COFFER_DATA_DIR: dataDir,
          COFFER_PORT: String(await freePort()),
          COFFER_CONFIG: config,
        },
      },
    ).then(
      () => undefined,
      (err: { code?: number; stderr?: string }) => err,
    );
    expect(failed?.code).not.toBe(0);
    expect(failed?.stderr).toMatch(/COFFER_CONFIG|coffer\.yaml/);
    expect(failed?.stderr).not.toMatch(/\n\s+at /);
    await expectNothingLeft(dataDir);
  }, 120_000);
});
