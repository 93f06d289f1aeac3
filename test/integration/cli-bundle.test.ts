import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthorizationRequest, Authorizer, Decision } from '../../lib/authz/authorizer.js';
import { type CliIo, runCli } from '../../lib/cli/main.js';
import { createHarness, type Harness } from '../support/harness.js';

/** The admin may do anything; others may not read `denied/...` nor write `readonly/...`. */
class TestAuthorizer implements Authorizer {
  readonly policySetHash = 'test';
  authorize({ principal, action, resource }: AuthorizationRequest): Decision {
    const p = resource.path;
    const admin = principal.id === 'dev:dev-admin';
    const denied =
      !admin &&
      ((p.startsWith('denied/') && action === 'read') || (p.startsWith('readonly/') && action === 'write'));
    return { allowed: !denied, policyIds: [denied ? 'deny' : 'allow'], errors: [] };
  }
}

const CANARY = 'bundle-canary-9f3e1a';

let h: Harness;
let server: ServerType;
let dir: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  h = await createHarness({ label: 'clibundle', authorizer: new TestAuthorizer() });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  dir = await mkdtemp(join(tmpdir(), 'coffer-bundle-'));
  env = {
    COFFER_ADDR: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    COFFER_TOKEN: await h.issuer.mint({ subject: 'dev', groups: [] }),
    COFFER_DATA_DIR: join(dir, 'data'),
  };
  for (const [path, value] of [
    ['team/dev/db/password', CANARY],
    ['team/dev/api-key', 'api-1'],
    ['team/dev/empty', ''],
    ['team/prod/db/password', 'prod-only'],
    ['denied/x', 'no'],
  ]) {
    expect((await h.call('PUT', `/v1/secrets/${path}`, { body: { value } })).status).toBe(200);
  }
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

async function cli(args: string[], options: { tty?: boolean } = {}) {
  const o = { stdout: '', stderr: '' };
  const io: CliIo = {
    env,
    cwd: dir,
    stdin: Readable.from([]),
    stdout: { write: (s: string) => (o.stdout += s) },
    stderr: { write: (s: string) => (o.stderr += s), ...(options.tty ? { isTTY: true } : {}) },
  };
  const code = await runCli(args, io);
  return { code, ...o };
}

const value = async (path: string) => {
  const res = await h.call('GET', `/v1/secrets/${path}`);
  return res.status === 200 ? (res.body.value as string) : res.status;
};

async function keygen(name: string): Promise<string> {
  const r = await cli(['--quiet', 'keygen', '-o', name]);
  expect(r.code).toBe(0);
  return r.stdout.trim();
}

describe('coffer keygen', () => {
  it('when it creates an identity, the file is 0600, and the printed recipient is its public key', async () => {
    const r = await cli(['keygen', '-o', 'alice.key']);
    expect(r.code).toBe(0);
    const recipient = /age1[0-9a-z]{58}/.exec(r.stdout)?.[0];
    expect(recipient).toBeDefined();
    const file = await readFile(join(dir, 'alice.key'), 'utf8');
    expect(file).toContain(`# public key: ${recipient}`);
    expect(file).toMatch(/^AGE-SECRET-KEY-1[0-9A-Z]+$/m);
    expect(r.stdout).not.toContain('AGE-SECRET-KEY');
    expect((await stat(join(dir, 'alice.key'))).mode & 0o777).toBe(0o600);
  });

  it('when the file exists, it refuses to overwrite it', async () => {
    const before = await readFile(join(dir, 'alice.key'), 'utf8');
    const r = await cli(['keygen', '-o', 'alice.key']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('already exists');
    expect(await readFile(join(dir, 'alice.key'), 'utf8')).toBe(before);
    const dash = await cli(['keygen', '-o', '-']);
    expect(dash.code).toBe(2);
    expect(dash.stderr).toContain('give -o FILE, not -');
    expect(dash.stdout).not.toContain('AGE-SECRET-KEY');
    await expect(stat(join(dir, '-'))).rejects.toThrow();
    const json = await cli(['--json', 'keygen', '-o', 'json.key']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      recipient: expect.stringMatching(/^age1/),
      identityFile: join(dir, 'json.key'),
    });
  });
});

describe('coffer export / import', () => {
  let alice: string;
  beforeAll(async () => {
    alice = await keygen('new-dev.key');
  });

  it('when a bundle is exported and imported into another prefix, every secret arrives', async () => {
    const exp = await cli(['--json', 'export', '--to', alice, 'team/dev/', '-o', 'dev.age']);
    expect(exp.stderr).toBe('');
    expect(exp.code).toBe(0);
    expect(JSON.parse(exp.stdout).secrets).toHaveLength(3);
    const bundle = await readFile(join(dir, 'dev.age'));
    expect((await stat(join(dir, 'dev.age'))).mode & 0o777).toBe(0o600);
    expect(bundle.subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    expect(bundle.includes(CANARY)).toBe(false);
    expect(bundle.includes('team/dev')).toBe(false);

    const imp = await cli([
      '--json',
      'import',
      'dev.age',
      '--identity',
      'new-dev.key',
      '--prefix',
      'alice/dev',
    ]);
    expect(imp.stderr).toBe('');
    expect(imp.code).toBe(0);
    expect(JSON.parse(imp.stdout)).toEqual({
      dryRun: false,
      created: ['alice/dev/api-key', 'alice/dev/db/password', 'alice/dev/empty'],
      updated: [],
      unchanged: [],
      failed: [],
    });
    expect(await value('alice/dev/db/password')).toBe(CANARY);
    expect(await value('alice/dev/api-key')).toBe('api-1');
    expect(await value('alice/dev/empty')).toBe('');
    expect(await value('team/prod/db/password')).toBe('prod-only');

    const again = await cli(['import', 'dev.age', '--identity', 'new-dev.key', '--prefix', 'alice/dev/']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('0 created, 0 updated, 3 unchanged, 0 failed');
    expect((await h.call('GET', '/v1/meta/alice/dev/api-key')).body.currentVersion).toBe(1);
  });

  it('when --dry-run is given, it reports the plan and writes nothing', async () => {
    await h.call('PUT', '/v1/secrets/dry/api-key', { body: { value: 'different' } });
    const r = await cli(['import', 'dev.age', '--identity', 'new-dev.key', '--prefix', 'dry', '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('create     dry/db/password');
    expect(r.stdout).toContain('update     dry/api-key');
    expect(r.stdout).toContain('(dry run: nothing written)');
    expect(r.stdout).not.toContain(CANARY);
    expect(await value('dry/db/password')).toBe(404);
    expect(await value('dry/api-key')).toBe('different');
  });

  it('when no --prefix is given, it writes to the original paths; single paths and folder names work', async () => {
    const r = await cli([
      'export',
      '--to',
      alice,
      '--armor',
      'team/dev/api-key',
      'team/dev/db',
      '-o',
      'some.age',
    ]);
    expect(r.code).toBe(0);
    const armored = await readFile(join(dir, 'some.age'), 'utf8');
    expect(armored.startsWith('-----BEGIN AGE ENCRYPTED FILE-----')).toBe(true);
    const imp = await cli([
      '--json',
      'import',
      'some.age',
      '--identity',
      'new-dev.key',
      '--prefix',
      'single',
    ]);
    expect(JSON.parse(imp.stdout).created).toEqual(['single/api-key', 'single/password']);
    const same = await cli(['--json', 'import', 'some.age', '--identity', 'new-dev.key']);
    expect(JSON.parse(same.stdout).unchanged).toEqual(['team/dev/api-key', 'team/dev/db/password']);
  });

  it('when the bundle is opened with the wrong identity, it fails clearly (exit 9) and writes nothing', async () => {
    const bob = await keygen('bob.key');
    const r = await cli(['import', 'dev.age', '--identity', 'bob.key', '--prefix', 'bob']);
    expect(r.code).toBe(9);
    expect(r.stderr).toContain('this bundle was not encrypted to the identity in bob.key');
    expect(r.stderr).toContain(bob);
    expect(r.stderr).toContain('bundle_wrong_identity');
    expect(await value('bob/api-key')).toBe(404);
  });

  it('when the bundle was altered, it fails as a whole (exit 9) and writes nothing', async () => {
    const original = await readFile(join(dir, 'dev.age'));
    for (const at of [original.length - 20, Math.floor(original.length / 2), 60]) {
      const tampered = Buffer.from(original);
      tampered[at] = (tampered[at] as number) ^ 0x01;
      await writeFile(join(dir, 'tampered.age'), tampered);
      const r = await cli(['import', 'tampered.age', '--identity', 'new-dev.key', '--prefix', 'evil']);
      expect(r.code).toBe(9);
      expect(r.stderr).toMatch(/damaged or was altered|not encrypted to the identity/);
    }
    const payload = Buffer.from(original);
    payload[payload.length - 20] = (payload[payload.length - 20] as number) ^ 0x01;
    await writeFile(join(dir, 'tampered.age'), payload);
    const r = await cli(['import', 'tampered.age', '--identity', 'new-dev.key', '--prefix', 'evil']);
    expect(r.stderr).toContain('the bundle is damaged or was altered');
    await writeFile(join(dir, 'truncated.age'), original.subarray(0, original.length - 40));
    expect(
      (await cli(['import', 'truncated.age', '--identity', 'new-dev.key', '--prefix', 'evil'])).code,
    ).toBe(9);
    // Not a bundle at all (the identity file given by mistake): said as such, same exit code.
    const notBundle = await cli(['import', 'new-dev.key', '--identity', 'new-dev.key', '--prefix', 'evil']);
    expect(notBundle.code).toBe(9);
    expect(notBundle.stderr).toContain('this is not an age-encrypted bundle');
    expect(notBundle.stderr).not.toContain('AGE-SECRET-KEY');
    expect(await value('evil/api-key')).toBe(404);
    expect(await value('evil/db/password')).toBe(404);
  });

  it('when a path cannot be read, export fails (exit 5 or 3) and writes no bundle', async () => {
    const denied = await cli(['export', '--to', alice, 'team/dev/api-key', 'denied/x', '-o', 'partial.age']);
    expect(denied.code).toBe(5);
    expect(denied.stderr).toContain('denied/x');
    const missing = await cli(['export', '--to', alice, 'nothing/here', '-o', 'partial.age']);
    expect(missing.code).toBe(3);
    expect((await readdir(dir)).filter((f) => f.includes('partial'))).toEqual([]);
    expect((await cli(['export', '--to', 'age1notakey', 'team/dev/', '-o', 'x.age'])).code).toBe(2);
  });

  it('when policies refuse some writes, import writes the rest, lists the failures and exits non-zero', async () => {
    const r = await cli(['--json', 'import', 'dev.age', '--identity', 'new-dev.key', '--prefix', 'readonly']);
    expect(r.code).toBe(5);
    const summary = JSON.parse(r.stdout);
    expect(summary.failed).toHaveLength(3);
    expect(summary.failed[0]).toMatchObject({ code: 'forbidden' });
    expect(JSON.parse(r.stderr).error.code).toBe('forbidden');
  });

  it('when stderr is a terminal, a progress bar is drawn there; otherwise (or with --quiet) nothing', async () => {
    const tty = await cli(['export', '--to', alice, 'team/dev/', '-o', 'p.age'], { tty: true });
    expect(tty.stderr).toContain('export [');
    expect(tty.stderr).toContain('3/3');
    const quiet = await cli(['--quiet', 'export', '--to', alice, 'team/dev/', '-o', 'p.age'], { tty: true });
    expect(quiet.stderr).toBe('');
    expect(quiet.stdout).toBe('');
    const piped = await cli(['export', '--to', alice, 'team/dev/', '-o', 'p.age']);
    expect(piped.stderr).toBe('');
  });
});

describe('coffer backup / restore-backup', () => {
  it('when a prefix is backed up and restored elsewhere, values, descriptions and tags come back', async () => {
    await h.call('PUT', '/v1/secrets/svc/a', {
      body: { value: 'A', description: 'the a', tags: { env: 'prod' } },
    });
    await h.call('PUT', '/v1/secrets/svc/sub/b', { body: { value: 'B' } });
    const backupKey = await keygen('backup.key');
    const b = await cli(['--json', 'backup', 'svc', '--to', backupKey, '-o', 'svc.age']);
    expect(b.code).toBe(0);
    expect(JSON.parse(b.stdout)).toMatchObject({ root: 'svc/', secrets: ['svc/a', 'svc/sub/b'] });
    const r = await cli([
      '--json',
      'restore-backup',
      'svc.age',
      '--identity',
      'backup.key',
      '--prefix',
      'svc-restored',
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).created).toEqual(['svc-restored/a', 'svc-restored/sub/b']);
    const meta = await h.call('GET', '/v1/meta/svc-restored/a');
    expect(meta.body).toMatchObject({ description: 'the a', tags: { env: 'prod' } });
    expect(await value('svc-restored/sub/b')).toBe('B');
    // An export bundle is not a backup.
    const wrongKind = await cli(['restore-backup', 'dev.age', '--identity', 'new-dev.key']);
    expect(wrongKind.code).toBe(9);
    expect(wrongKind.stderr).toContain('use coffer import');
  });
});
