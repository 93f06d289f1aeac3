import { once } from 'node:events';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type ServerType, serve } from '@hono/node-server';
import { decodeJwt, importPKCS8, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEV_AUDIENCE, DEV_ISSUER } from '../../lib/authn/dev-issuer.js';
import { type CliIo, runCli } from '../../lib/cli/main.js';
import { freePort } from '../../lib/local/dynamodb-local.js';
import { createHarness, type Harness } from '../support/harness.js';

let h: Harness;
let server: ServerType;
let addr: string;

beforeAll(async () => {
  h = await createHarness({ label: 'clicore' });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  addr = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // The data dir's admin token, as the local server writes it.
  await writeFile(join(h.dataDir, 'dev-token'), `${h.token}\n`, { mode: 0o600 });
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

/** Runs the CLI with the data dir of the harness; `env` adds or replaces variables. */
async function cli(args: string[], options: { stdin?: string; env?: NodeJS.ProcessEnv; tty?: boolean } = {}) {
  const o = { stdout: '', stderr: '' };
  const io: CliIo = {
    env: {
      COFFER_ADDR: addr,
      COFFER_DATA_DIR: h.dataDir,
      COFFER_LOGIN_CACHE: '/nonexistent',
      ...options.env,
    },
    cwd: h.dataDir,
    stdin: Object.assign(Readable.from(options.stdin ? [Buffer.from(options.stdin)] : []), { isTTY: false }),
    stdout: { write: (s: string) => (o.stdout += s), isTTY: options.tty ?? false },
    stderr: { write: (s: string) => (o.stderr += s) },
  };
  const code = await runCli(args, io);
  expect(o.stderr).not.toMatch(/\bat .+\.(ts|js):\d+/);
  return { code, ...o };
}

describe('coffer put, get, ls, rm, restore, history', () => {
  it('when the value comes from stdin with "-", it is stored byte for byte and printed back exactly', async () => {
    const value = 'line one\nline two\n\ttabbed ünï 😀\n';
    const put = await cli(['put', 'cli/app/multi', '-'], { stdin: value });
    expect(put.code, put.stderr).toBe(0);
    expect(put.stdout).toBe('cli/app/multi: version 1\n');
    const got = await cli(['get', 'cli/app/multi']);
    expect(got.stdout).toBe(value);
    // Piped stdin without "-" is read the same way: the value never has to be an argument.
    expect((await cli(['put', 'cli/app/multi'], { stdin: 'second' })).code).toBe(0);
    expect((await cli(['get', 'cli/app/multi'])).stdout).toBe('second');
  });

  it('when --version is given, that version is printed; on a terminal a newline is added', async () => {
    expect((await cli(['get', 'cli/app/multi', '--version', '2'], { tty: true })).stdout).toBe('second\n');
    expect((await cli(['get', 'cli/app/multi', '--version', '1'])).stdout).toMatch(/^line one/);
    const missing = await cli(['get', 'cli/app/multi', '--version', '9']);
    expect(missing.code).toBe(3);
    // The server's request id follows the code, so the failure can be found in the audit trail.
    expect(missing.stderr).toMatch(
      /^coffer: secret version not found \(not_found, request id [0-9a-f-]{36}\)\n$/,
    );
    expect((await cli(['get', 'cli/app/multi', '--version', 'zero'])).code).toBe(2);
  });

  it('when --json is given, every command answers JSON on stdout', async () => {
    const put = JSON.parse((await cli(['--json', 'put', 'cli/json/a', 'x'])).stdout);
    expect(put).toMatchObject({ path: 'cli/json/a', version: 1 });
    const get = JSON.parse((await cli(['get', 'cli/json/a', '--json'])).stdout);
    expect(get).toMatchObject({ path: 'cli/json/a', version: 1, value: 'x' });
    const ls = JSON.parse((await cli(['--json', 'ls', 'cli/'])).stdout);
    expect(ls).toEqual({ items: [], folders: ['cli/app/', 'cli/json/'] });
    const history = JSON.parse((await cli(['--json', 'history', 'cli/json/a'])).stdout);
    expect(history).toMatchObject({ path: 'cli/json/a', currentVersion: 1, versions: [{ version: 1 }] });
    const rm = JSON.parse((await cli(['--json', 'rm', 'cli/json/a'])).stdout);
    expect(rm).toMatchObject({ path: 'cli/json/a' });
    expect(Date.parse(rm.purgeAt) - Date.parse(rm.deletedAt)).toBe(7 * 86_400_000);
    const restore = JSON.parse((await cli(['--json', 'restore', 'cli/json/a'])).stdout);
    expect(restore).toEqual({ path: 'cli/json/a', version: 1 });
    const token = JSON.parse((await cli(['--json', 'token', '--sub', 'robot'])).stdout);
    expect(decodeJwt(token.token).sub).toBe('robot');
    const failed = await cli(['--json', 'get', 'cli/json/none']);
    expect(failed.code).toBe(3);
    expect(failed.stdout).toBe('');
    expect(JSON.parse(failed.stderr)).toEqual({
      error: {
        code: 'not_found',
        message: 'secret not found',
        requestId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      },
    });
  });

  it('when a secret is removed, reads fail until it is restored, and history shows the deletion', async () => {
    await cli(['put', 'cli/rm/x', 'keep-me']);
    const removed = await cli(['rm', 'cli/rm/x', '--recovery-days', '10']);
    expect(removed.code).toBe(0);
    expect(removed.stdout).toMatch(/^cli\/rm\/x: deleted; restorable until \d{4}-/);
    expect((await cli(['get', 'cli/rm/x'])).code).toBe(3);
    expect((await cli(['history', 'cli/rm/x'])).stdout).toMatch(/\(deleted; purge at /);
    expect((await cli(['ls', 'cli/rm/'])).stdout).toBe('');
    // Writing over a deleted secret is a conflict: restore first.
    expect((await cli(['put', 'cli/rm/x', 'other'])).code).toBe(6);
    expect((await cli(['rm', 'cli/rm/x', '--recovery-days', '3'])).code).toBe(2);
    expect((await cli(['restore', 'cli/rm/x'])).stdout).toBe('cli/rm/x: restored (version 1)\n');
    expect((await cli(['get', 'cli/rm/x'])).stdout).toBe('keep-me');
    const again = await cli(['restore', 'cli/rm/x']);
    expect(again.code).not.toBe(0);
  });

  it('when ls has more than one page of secrets, it lists every one, folders apart', async () => {
    for (let i = 0; i < 105; i++) {
      expect(
        (await h.call('PUT', `/v1/secrets/cli/many/s${String(i).padStart(3, '0')}`, { body: { value: 'v' } }))
          .status,
      ).toBe(200);
    }
    await h.call('PUT', '/v1/secrets/cli/many/sub/deep', { body: { value: 'v' } });
    const level = (await cli(['ls', 'cli/many/'])).stdout.trim().split('\n');
    expect(level).toHaveLength(106);
    expect(level[0]).toBe('cli/many/sub/');
    const all = (await cli(['ls', '-r', 'cli/many/'])).stdout.trim().split('\n');
    expect(all).toHaveLength(106);
    expect(all).toContain('cli/many/sub/deep');
  });
});

describe('coffer token', () => {
  it('prints the token alone, for the subject and groups asked, living as long as --ttl says', async () => {
    const r = await cli(['token', '--sub', 'alice', '--groups', 'team-a, team-b', '--ttl', '2h']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const claims = decodeJwt(r.stdout.trim());
    expect(claims).toMatchObject({ sub: 'alice', groups: ['team-a', 'team-b'], iss: DEV_ISSUER });
    expect((claims.exp as number) - (claims.iat as number)).toBe(7200);
    const who = await cli(['--json', 'whoami'], { env: { COFFER_TOKEN: r.stdout.trim() } });
    expect(JSON.parse(who.stdout)).toMatchObject({ id: 'dev:alice', groups: ['team-a', 'team-b'] });
  });

  it('when --sub, --ttl or a group is wrong, it is a usage error', async () => {
    expect((await cli(['token'])).code).toBe(2);
    expect((await cli(['token', '--sub', 'a b'])).code).toBe(2);
    expect((await cli(['token', '--sub', 'a', '--ttl', '31d'])).code).toBe(2);
    expect((await cli(['token', '--sub', 'a', '--groups', 'ok,bad group'])).code).toBe(2);
  });

  it('when the data dir has no dev issuer, it says so and creates no key', async () => {
    const empty = join(h.dataDir, 'no-server-here');
    const r = await cli(['token', '--sub', 'alice'], { env: { COFFER_DATA_DIR: empty } });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/no dev issuer in .*no-server-here: start the local server once/);
    await expect(stat(join(empty, 'keys', 'dev-issuer.pem'))).rejects.toThrow();
  });
});

describe('where the CLI finds its server and token', () => {
  it('when COFFER_TOKEN is set it wins over the data dir dev token', async () => {
    const alice = (await cli(['token', '--sub', 'env-user'])).stdout.trim();
    expect(JSON.parse((await cli(['--json', 'whoami'], { env: { COFFER_TOKEN: alice } })).stdout).id).toBe(
      'dev:env-user',
    );
    expect(JSON.parse((await cli(['--json', 'whoami'])).stdout).id).toBe('dev:dev-admin');
  });

  it('when there is no token anywhere, it says where it looked, exits 4 and sends nothing', async () => {
    const r = await cli(['get', 'cli/app/multi'], { env: { COFFER_DATA_DIR: join(h.dataDir, 'empty') } });
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(
      /^coffer: no token: set COFFER_TOKEN, run "coffer login", or start the local server/,
    );
    expect(r.stderr).toContain(join(h.dataDir, 'empty', 'dev-token'));
    expect(r.stderr).toContain('COFFER_DATA_DIR');
  });

  it('when the token has expired, it says so and when', async () => {
    const pem = await readFile(join(h.dataDir, 'keys', 'dev-issuer.pem'), 'utf8');
    const key = await importPKCS8(pem, 'EdDSA');
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ groups: [] })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'JWT', kid: 'dev' })
      .setIssuer(DEV_ISSUER)
      .setAudience(DEV_AUDIENCE)
      .setSubject('old')
      .setIssuedAt(now - 7200)
      .setExpirationTime(now - 3600)
      .sign(key);
    const r = await cli(['get', 'cli/app/multi'], { env: { COFFER_TOKEN: expired } });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(
      `the token from COFFER_TOKEN expired at ${new Date((now - 3600) * 1000).toISOString()}`,
    );
    const json = await cli(['--json', 'get', 'cli/app/multi'], { env: { COFFER_TOKEN: expired } });
    expect(JSON.parse(json.stderr).error.code).toBe('unauthenticated');
  });

  it('when the token is refused for another reason, it names where the token came from', async () => {
    await mkdir(join(h.dataDir, 'other'), { recursive: true });
    await writeFile(join(h.dataDir, 'other', 'dev-token'), 'not-a-jwt\n');
    const r = await cli(['ls'], { env: { COFFER_DATA_DIR: join(h.dataDir, 'other') } });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`the server refused the token from ${join(h.dataDir, 'other', 'dev-token')}`);
    await rm(join(h.dataDir, 'other'), { recursive: true, force: true });
  });

  it('when COFFER_ADDR is not an http(s) URL or not the API base, it says what to set', async () => {
    for (const bad of ['127.0.0.1:8270', 'ftp://127.0.0.1', 'not a url']) {
      const r = await cli(['ls'], { env: { COFFER_ADDR: bad } });
      expect(r.code, bad).toBe(2);
      expect(r.stderr).toBe(
        'coffer: COFFER_ADDR must be an http(s) URL, like http://127.0.0.1:8270 (invalid_config)\n',
      );
    }
    const below = await cli(['get', 'cli/app/multi'], { env: { COFFER_ADDR: `${addr}/v1` } });
    expect(below.code).toBe(2);
    expect(below.stderr).toContain(
      `${addr}/v1 has no Coffer API here: set COFFER_ADDR to the server's base address`,
    );
    // A trailing slash is the same address.
    expect((await cli(['get', 'cli/app/multi'], { env: { COFFER_ADDR: `${addr}/` } })).stdout).toBe('second');
  });

  it('when the server is not running, it says so in one line and exits 8', async () => {
    const port = await freePort();
    const r = await cli(['get', 'x/y'], { env: { COFFER_ADDR: `http://127.0.0.1:${port}` } });
    expect(r.code).toBe(8);
    expect(r.stderr).toBe(
      `coffer: cannot reach the Coffer server at http://127.0.0.1:${port}: is it running? Start it with "npm start", or set COFFER_ADDR (unreachable)\n`,
    );
  });
});
