import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DevIssuer } from '../../lib/authn/dev-issuer.js';
import { runCli } from '../../lib/cli/main.js';
import { localSettings } from '../../lib/config.js';
import { type LocalServer, startLocalServer } from '../../lib/local/server.js';
import { jsonLogger } from '../../lib/log.js';

/*
 * On a running local server, without a restart (issue 17): `coffer revoke` takes effect on the
 * principal's next request, `coffer revocations rm` restores it, and an edited policy file changes
 * decisions within 2 seconds while an invalid edit keeps the set in force.
 */

const ADMINS = `@id("admins-may-do-everything")
permit (principal in Coffer::Group::"admins", action, resource);
`;
const DEVS_READ = `@id("devs-read-team")
permit (
  principal in Coffer::Group::"devs",
  action in [Coffer::Action::"read", Coffer::Action::"readMetadata"],
  resource in Coffer::Folder::"team/"
);
`;

let server: LocalServer;
let dataDir: string;
let policyDir: string;
let admin: string;
let alice: string;
const logs: string[] = [];

async function cli(args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    env: { COFFER_ADDR: server.url, COFFER_TOKEN: admin, COFFER_DATA_DIR: dataDir },
    stdin: Object.assign(Readable.from([]), { isTTY: false }),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    cwd: dataDir,
  });
  return { code, stdout, stderr };
}

async function read(token: string): Promise<{ status: number; code?: string }> {
  const res = await fetch(`${server.url}/v1/secrets/team/db`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const body = (await res.json()) as { error?: { code: string } };
  return { status: res.status, ...(body.error ? { code: body.error.code } : {}) };
}

/** Polls until `check` holds, up to `withinMs`; returns how long it took. */
async function within(withinMs: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > withinMs) throw new Error(`not within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'coffer-local-ctl-'));
  policyDir = join(dataDir, 'policies');
  await mkdir(policyDir);
  await copyFile('policies/schema.cedarschema', join(policyDir, 'schema.cedarschema'));
  await writeFile(join(policyDir, 'admins.cedar'), ADMINS);
  await writeFile(join(policyDir, 'devs.cedar'), DEVS_READ);
  const settings = localSettings({
    COFFER_DATA_DIR: dataDir,
    COFFER_DYNAMODB_ENDPOINT: inject('dynamodbEndpoint'),
    COFFER_POLICY_DIR: policyDir,
    // Its own secrets table: control records are MAC'd with this data dir's key.
    COFFER_SECRETS_TABLE: `local-ctl-${randomBytes(4).toString('hex')}`,
  });
  server = await startLocalServer(
    { ...settings, port: 0 },
    jsonLogger((l) => logs.push(l)),
  );
  admin = (await readFile(server.tokenFile, 'utf8')).trim();
  alice = await (await DevIssuer.open(dataDir)).mint({ subject: 'alice', groups: ['devs'] });
  const put = await fetch(`${server.url}/v1/secrets/team/db`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify({ value: 'v' }),
  });
  expect(put.status).toBe(200);
});

afterAll(async () => {
  await server?.stop();
});

describe('a running local server', () => {
  it('when `coffer revoke` names a principal, its next request is 403 revoked; `coffer revocations rm` restores access', async () => {
    expect(await read(alice)).toEqual({ status: 200 });
    const revoked = await cli(['--json', 'revoke', 'User::"dev:alice"', '--reason', 'test']);
    expect(revoked.code, revoked.stderr).toBe(0);
    const entry = JSON.parse(revoked.stdout) as { id: string };
    expect(await read(alice)).toEqual({ status: 403, code: 'revoked' });

    const ls = await cli(['revocations', 'ls']);
    expect(ls.stdout).toContain(entry.id);
    expect(ls.stdout).toContain('User::"dev:alice"');

    const removed = await cli(['revocations', 'rm', entry.id]);
    expect(removed.code, removed.stderr).toBe(0);
    expect(await read(alice)).toEqual({ status: 200 });
  });

  it('when `coffer revoke --group` names a group, every member is refused until it is removed', async () => {
    const revoked = await cli(['--json', 'revoke', '--group', 'devs']);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(await read(alice)).toEqual({ status: 403, code: 'revoked' });
    expect((await read(admin)).status).toBe(200);
    const { id } = JSON.parse(revoked.stdout) as { id: string };
    expect((await cli(['revocations', 'rm', id])).code).toBe(0);
    expect(await read(alice)).toEqual({ status: 200 });
  });

  it('when a policy file is edited, decisions change within 2 s; an invalid edit keeps the set in force and the server keeps serving', async () => {
    await rm(join(policyDir, 'devs.cedar'));
    await within(2000, async () => (await read(alice)).status === 404);

    await writeFile(join(policyDir, 'devs.cedar'), DEVS_READ);
    await within(2000, async () => (await read(alice)).status === 200);

    // Invalid: an action the schema does not declare. The old set (alice may read) stays.
    const refusedBefore = logs.filter((l) => l.includes('policy change refused')).length;
    await writeFile(
      join(policyDir, 'broken.cedar'),
      'permit (principal, action == Coffer::Action::"fly", resource);',
    );
    await within(
      2000,
      async () => logs.filter((l) => l.includes('policy change refused')).length > refusedBefore,
    );
    expect(await read(alice)).toEqual({ status: 200 });
    expect((await read(admin)).status).toBe(200);
    const refused = logs.filter((l) => l.includes('policy change refused'));
    expect(refused.length - refusedBefore).toBe(1);
    expect(refused.at(-1)).toContain('broken.cedar');
    await rm(join(policyDir, 'broken.cedar'));
  });

  it('when `coffer policy push` sends a set, the server applies it; `coffer policy history` and `rollback` work end to end', async () => {
    const pushDir = join(dataDir, 'push');
    await mkdir(pushDir);
    await writeFile(join(pushDir, 'admins.cedar'), ADMINS);
    const pushed = await cli(['policy', 'push', '--dir', pushDir, '--comment', 'ci 42']);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).toMatch(/^pushed v1 \([0-9a-f]{16}…\): active/);
    expect((await read(alice)).status).toBe(404);

    await writeFile(join(pushDir, 'devs.cedar'), DEVS_READ);
    expect((await cli(['policy', 'push', '--dir', pushDir])).code).toBe(0);
    expect((await read(alice)).status).toBe(200);

    const back = await cli(['policy', 'rollback', '1']);
    expect(back.code, back.stderr).toBe(0);
    expect((await read(alice)).status).toBe(404);

    const history = await cli(['--json', 'policy', 'history']);
    const parsed = JSON.parse(history.stdout) as {
      active: { version: number };
      versions: { version: number }[];
    };
    expect(parsed.active.version).toBe(3);
    expect(parsed.versions.map((v) => v.version)).toEqual([3, 2, 1]);
    const text = await cli(['policy', 'history']);
    expect(text.stdout).toContain('* v3');
    expect(text.stdout).toContain('ci 42');

    // Not an admin: refused.
    const denied = await runCli(['policy', 'history'], {
      env: { COFFER_ADDR: server.url, COFFER_TOKEN: alice },
      stdin: Object.assign(Readable.from([]), { isTTY: false }),
      stdout: { write: () => true },
      stderr: { write: () => true },
      cwd: dataDir,
    });
    expect(denied).toBe(5);
  });
});
