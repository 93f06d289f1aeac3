import { mkdir, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAuthenticator } from '../../lib/authn/build.js';
import { runCli } from '../../lib/cli/main.js';
import { parseConfig } from '../../lib/config-file.js';
import { silentLogger } from '../../lib/log.js';
import { createHarness, type Harness } from '../support/harness.js';
import { CLI_CLIENT_ID, startTestIdp, type TestIdp } from '../support/oidc-idp.js';

interface Run {
  readonly done: Promise<number>;
  stdout(): string;
  stderr(): string;
}

function cli(args: string[], env: Record<string, string>): Run {
  let stdout = '';
  let stderr = '';
  const done = runCli(args, {
    env,
    stdin: Object.assign(Readable.from([]), { isTTY: false }),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    cwd: tmpdir(),
  });
  return { done, stdout: () => stdout, stderr: () => stderr };
}

async function waitForOutput(run: Run, pattern: RegExp, ms = 20_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + ms;
  for (;;) {
    const m = pattern.exec(run.stderr());
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}: ${run.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `coffer login` (device flow and code + PKCE), the 0600 token cache, refresh, and `coffer whoami`. */
describe('coffer login', () => {
  let idp: TestIdp;
  let h: Harness;
  let api: ServerType;
  let apiUrl: string;
  let dir: string;
  let env: Record<string, string>;
  let cachePath: string;

  beforeAll(async () => {
    idp = await startTestIdp({
      groups: { alice: ['eng'], bob: ['ops'] },
      claims: { alice: { email: 'alice@example.test' } },
    });
    dir = await mkdtemp(join(tmpdir(), 'coffer-login-'));
    const configFile = join(dir, 'coffer.yaml');
    await writeFile(
      configFile,
      `issuers:
  - alias: corp
    issuer: ${idp.issuer}
    audiences: [${idp.audience}]
    requireAtJwt: true
    allowHttpLoopback: true
    claims: { attributes: { email: email } }
    groupMapping: { eng: [engineers], ops: [operators] }
    login:
      clientId: ${CLI_CLIENT_ID}
      scopes: [openid, offline_access, coffer]
      resource: ${idp.resource}
`,
    );
    const config = parseConfig(await readFile(configFile, 'utf8'), { env: {} });
    h = await createHarness({
      label: 'oidclogin',
      authenticator: (dev) =>
        buildAuthenticator({ config, logger: silentLogger, devIssuerKey: dev.publicKey }),
    });
    api = await new Promise<ServerType>((resolve) => {
      const s = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
    });
    apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
    cachePath = join(dir, 'cache', 'login.json');
    env = {
      COFFER_ADDR: apiUrl,
      COFFER_LOGIN_CACHE: cachePath,
      COFFER_CONFIG: configFile,
      COFFER_DATA_DIR: join(dir, 'no-data-dir'),
    };
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => (api ? api.close(() => resolve()) : resolve()));
    await idp?.close();
  });

  it('when a person logs in with the device flow, the token is cached 0600 and whoami shows the principal', async () => {
    const login = cli(
      [
        'login',
        '--issuer',
        idp.issuer,
        '--client-id',
        CLI_CLIENT_ID,
        '--scope',
        'openid offline_access coffer',
        '--resource',
        idp.resource,
        '--allow-http-loopback',
      ],
      { ...env, COFFER_CONFIG: '' },
    );
    const [, code] = await waitForOutput(login, /enter the code (\S+)/);
    await idp.approveDevice(code as string, 'alice');
    expect(await login.done, login.stderr()).toBe(0);
    expect(login.stderr()).toContain(`Signed in for ${apiUrl}`);

    expect(((await stat(cachePath)).mode & 0o777).toString(8)).toBe('600');
    expect(((await stat(join(dir, 'cache'))).mode & 0o777).toString(8)).toBe('700');
    const cache = JSON.parse(await readFile(cachePath, 'utf8'));
    expect(cache).toMatchObject({ version: 1, server: apiUrl, issuer: idp.issuer, clientId: CLI_CLIENT_ID });
    expect(typeof cache.refreshToken).toBe('string');
    expect(login.stderr() + login.stdout()).not.toContain(cache.accessToken);

    const who = cli(['--json', 'whoami'], env);
    expect(await who.done, who.stderr()).toBe(0);
    expect(JSON.parse(who.stdout())).toEqual({
      type: 'User',
      id: 'corp:alice',
      entity: 'Coffer::User::"corp:alice"',
      groups: ['engineers'],
      attributes: { email: 'alice@example.test' },
      authMethod: 'oidc',
      issuer: 'corp',
    });
    const human = cli(['whoami'], env);
    expect(await human.done).toBe(0);
    expect(human.stdout()).toBe(
      'Coffer::User::"corp:alice"\ngroups: engineers\nauth: oidc\nissuer: corp\nattributes: email=alice@example.test\n',
    );
  }, 60_000);

  it('when the cached access token has expired, the CLI refreshes it with the refresh token', async () => {
    const before = JSON.parse(await readFile(cachePath, 'utf8'));
    await writeFile(cachePath, JSON.stringify({ ...before, expiresAt: Math.floor(Date.now() / 1000) - 10 }), {
      mode: 0o600,
    });
    const who = cli(['--json', 'whoami'], env);
    expect(await who.done, who.stderr()).toBe(0);
    expect(JSON.parse(who.stdout()).id).toBe('corp:alice');
    const after = JSON.parse(await readFile(cachePath, 'utf8'));
    expect(after.accessToken).not.toBe(before.accessToken);
    expect(after.expiresAt).toBeGreaterThan(Math.floor(Date.now() / 1000) + 60);
    expect(((await stat(cachePath)).mode & 0o777).toString(8)).toBe('600');
  });

  it('when COFFER_TOKEN is set, it wins over the login cache', async () => {
    const who = cli(['--json', 'whoami'], { ...env, COFFER_TOKEN: h.token });
    expect(await who.done).toBe(0);
    expect(JSON.parse(who.stdout()).id).toBe('dev:dev-admin');
  });

  it('when COFFER_ADDR points at another server, the cached token is not sent there', async () => {
    const seen: IncomingHttpHeaders[] = [];
    const other = createServer((req, res) => {
      seen.push(req.headers);
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end('{"error":{"code":"unauthenticated","message":"authentication required"}}');
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const who = cli(['whoami'], {
        ...env,
        COFFER_ADDR: `http://127.0.0.1:${(other.address() as AddressInfo).port}`,
      });
      // No token for that server: the CLI says so and sends nothing at all.
      expect(await who.done).toBe(4);
      expect(who.stderr()).toContain('no token: set COFFER_TOKEN, run "coffer login"');
      expect(seen).toHaveLength(0);
    } finally {
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });

  it('when no login applies, the data dir dev token goes to a loopback server only, and a 401 says which token failed', async () => {
    const dataDir = join(dir, 'dev-data');
    await mkdir(dataDir, { recursive: true });
    const devToken = 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln';
    await writeFile(join(dataDir, 'dev-token'), `${devToken}\n`, { mode: 0o600 });
    const seen: { host: string; authorization?: string }[] = [];
    const refuse = (host: string) =>
      createServer((req, res) => {
        seen.push({
          host,
          ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
        });
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end('{"error":{"code":"unauthenticated","message":"authentication required"}}');
      });
    const local = refuse('127.0.0.1');
    // Coffer's loopback set is 127.0.0.1, [::1] and localhost; 127.0.0.2 stands in for a remote server.
    const remote = refuse('127.0.0.2');
    await new Promise<void>((resolve) => local.listen(0, '127.0.0.1', resolve));
    await new Promise<void>((resolve) => remote.listen(0, '127.0.0.2', resolve));
    const base = { ...env, COFFER_DATA_DIR: dataDir };
    try {
      const toLocal = cli(['whoami'], {
        ...base,
        COFFER_ADDR: `http://127.0.0.1:${(local.address() as AddressInfo).port}`,
      });
      expect(await toLocal.done).toBe(4);
      expect(toLocal.stderr()).toBe(
        `coffer: the server refused the token from ${join(dataDir, 'dev-token')}: is COFFER_ADDR the server of that data dir? (unauthenticated)\n`,
      );
      const toRemote = cli(['whoami'], {
        ...base,
        COFFER_ADDR: `http://127.0.0.2:${(remote.address() as AddressInfo).port}`,
      });
      expect(await toRemote.done).toBe(4);
      // No token for a remote server: the CLI says so and sends nothing there.
      expect(toRemote.stderr()).toContain('coffer: no token: set COFFER_TOKEN, run "coffer login"');
      expect(toRemote.stderr()).toContain('only sent to a server on this machine');
      expect(seen).toEqual([{ host: '127.0.0.1', authorization: `Bearer ${devToken}` }]);
      const withEnvToken = cli(['whoami'], {
        ...base,
        COFFER_TOKEN: 'not-a-token',
        COFFER_ADDR: `http://127.0.0.2:${(remote.address() as AddressInfo).port}`,
      });
      expect(await withEnvToken.done).toBe(4);
      expect(withEnvToken.stderr()).toContain('the server refused the token from COFFER_TOKEN');
      expect(withEnvToken.stderr()).not.toContain('not-a-token');
    } finally {
      await new Promise<void>((resolve) => local.close(() => resolve()));
      await new Promise<void>((resolve) => remote.close(() => resolve()));
    }
  });

  it('when the login expired and there is no refresh token, it says so and exits 4', async () => {
    const current = JSON.parse(await readFile(cachePath, 'utf8'));
    const { refreshToken: _drop, ...noRefresh } = current;
    await writeFile(cachePath, JSON.stringify({ ...noRefresh, expiresAt: 1000 }), { mode: 0o600 });
    const who = cli(['whoami'], env);
    expect(await who.done).toBe(4);
    expect(who.stderr()).toContain('your login has expired; run "coffer login" again');
  });

  it('when a person logs in with --browser (code + PKCE, loopback redirect), the issuer comes from COFFER_CONFIG', async () => {
    const login = cli(['login', '--issuer', 'corp', '--browser', '--no-open'], env);
    const [url] = await waitForOutput(login, /http:\/\/127\.0\.0\.1:\d+\/auth\?\S+/);
    const params = new URL(url).searchParams;
    expect(params.get('code_challenge_method')).toBe('S256');
    expect(params.get('redirect_uri')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    expect(params.get('resource')).toBe(idp.resource);
    const landing = await idp.browse(url, 'bob');
    expect(landing.status).toBe(200);
    expect(await landing.text()).toContain('Signed in to Coffer');
    expect(await login.done, login.stderr()).toBe(0);

    const who = cli(['--json', 'whoami'], env);
    expect(await who.done).toBe(0);
    expect(JSON.parse(who.stdout())).toMatchObject({
      id: 'corp:bob',
      groups: ['operators'],
      authMethod: 'oidc',
    });
  }, 60_000);

  it('when logging out, the cache is deleted and the CLI falls back', async () => {
    const out = cli(['logout'], env);
    expect(await out.done).toBe(0);
    await expect(stat(cachePath)).rejects.toThrow();
    const who = cli(['whoami'], env);
    expect(await who.done).toBe(4);
  });

  it('when the issuer or client cannot be determined, it is a usage error', async () => {
    const noIssuer = cli(['login'], { ...env, COFFER_CONFIG: '' });
    expect(await noIssuer.done).toBe(2);
    expect(noIssuer.stderr()).toContain('--issuer');
    const httpRemote = cli(['login', '--issuer', 'http://idp.example.com', '--client-id', 'x'], env);
    expect(await httpRemote.done).not.toBe(0);
    expect(httpRemote.stderr()).toContain('https');
  });
});
