import { chmod, mkdir, mkdtemp, readFile, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type LoginRecord,
  loginCachePath,
  loginCacheToken,
  ownsCacheDirectory,
  readLoginCache,
  writeLoginCache,
} from '../../lib/cli/login-cache.js';

const record: LoginRecord = {
  version: 1,
  server: 'http://127.0.0.1:8270',
  issuer: 'https://idp.example',
  clientId: 'coffer-cli',
  scope: 'openid',
  allowHttpLoopback: false,
  accessToken: 'a.b.c',
  expiresAt: 2_000_000_000,
};

const modeOf = async (path: string) => ((await stat(path)).mode & 0o777).toString(8);

describe('login cache file', () => {
  it('when the default directory already exists with a wide mode, writing makes it 0700 and the file 0600', async () => {
    const home = await mkdtemp(join(tmpdir(), 'coffer-cache-'));
    const env = { XDG_CONFIG_HOME: home };
    const path = loginCachePath(env) as string;
    expect(path).toBe(join(home, 'coffer', 'login.json'));
    await mkdir(join(home, 'coffer'), { mode: 0o755 });
    await chmod(join(home, 'coffer'), 0o755);
    expect(ownsCacheDirectory(env)).toBe(true);
    await writeLoginCache(path, record, { ownDirectory: ownsCacheDirectory(env) });
    expect(await modeOf(join(home, 'coffer'))).toBe('700');
    expect(await modeOf(path)).toBe('600');
    expect(await readLoginCache(path)).toEqual(record);
  });

  it('when the file existed with a wide mode, it is replaced by a 0600 file', async () => {
    const home = await mkdtemp(join(tmpdir(), 'coffer-cache-'));
    const path = join(home, 'coffer', 'login.json');
    await writeLoginCache(path, record, { ownDirectory: true });
    await chmod(path, 0o644);
    await writeLoginCache(path, { ...record, accessToken: 'd.e.f' }, { ownDirectory: true });
    expect(await modeOf(path)).toBe('600');
    expect(JSON.parse(await readFile(path, 'utf8')).accessToken).toBe('d.e.f');
  });

  it('when COFFER_LOGIN_CACHE names the file, its existing directory is left as the user made it', async () => {
    const shared = await mkdtemp(join(tmpdir(), 'coffer-cache-'));
    await chmod(shared, 0o755);
    const env = { COFFER_LOGIN_CACHE: join(shared, 'login.json'), XDG_CONFIG_HOME: '/nowhere' };
    expect(loginCachePath(env)).toBe(join(shared, 'login.json'));
    expect(ownsCacheDirectory(env)).toBe(false);
    await writeLoginCache(join(shared, 'login.json'), record, { ownDirectory: ownsCacheDirectory(env) });
    expect(await modeOf(shared)).toBe('755');
    expect(await modeOf(join(shared, 'login.json'))).toBe('600');
    // A directory it has to create is created 0700.
    const nested = join(shared, 'new', 'login.json');
    await writeLoginCache(nested, record, { ownDirectory: false });
    expect(await modeOf(join(shared, 'new'))).toBe('700');
  });
});

/** Discovery and a token endpoint whose refresh answers the test sets; enough for a refresh. */
async function fakeIdp(answer: () => Record<string, unknown>) {
  const grants: URLSearchParams[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += d;
    });
    req.on('end', () => {
      if (req.url === '/.well-known/openid-configuration') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ issuer: url, token_endpoint: `${url}/token` }));
        return;
      }
      if (req.url === '/token' && req.method === 'POST') {
        grants.push(new URLSearchParams(body));
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify({ token_type: 'Bearer', ...answer() }));
        return;
      }
      res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, grants, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('login cache refresh', () => {
  it('when the refreshed token has no known expiry, the old expiry is dropped; a rotated refresh token is kept', async () => {
    let answer: Record<string, unknown> = { access_token: 'opaque-1', refresh_token: 'r-2' };
    const idp = await fakeIdp(() => answer);
    try {
      const dir = await mkdtemp(join(tmpdir(), 'coffer-cache-'));
      const path = join(dir, 'login.json');
      const env = { COFFER_LOGIN_CACHE: path };
      const now = 1_900_000_000;
      await writeLoginCache(path, {
        ...record,
        issuer: idp.url,
        allowHttpLoopback: true,
        refreshToken: 'r-1',
        expiresAt: now - 5,
      });
      expect(await loginCacheToken(env, record.server, { now })).toBe('opaque-1');
      expect(idp.grants.map((g) => [g.get('grant_type'), g.get('refresh_token')])).toEqual([
        ['refresh_token', 'r-1'],
      ]);
      const after = await readLoginCache(path);
      expect(after?.accessToken).toBe('opaque-1');
      expect(after?.refreshToken).toBe('r-2');
      expect(after?.expiresAt).toBeUndefined();
      expect(await modeOf(path)).toBe('600');
      // No expiry known: the token is used as it is, without another refresh.
      expect(await loginCacheToken(env, record.server, { now: now + 3600 })).toBe('opaque-1');
      expect(idp.grants).toHaveLength(1);

      // With expires_in the expiry is known again; within 30 s of it the token is refreshed early.
      await writeLoginCache(path, { ...(after as LoginRecord), expiresAt: now + 20 });
      answer = { access_token: 'opaque-2', expires_in: 300 };
      expect(await loginCacheToken(env, record.server, { now })).toBe('opaque-2');
      expect((await readLoginCache(path))?.expiresAt).toBe(now + 300);
      expect((await readLoginCache(path))?.refreshToken).toBe('r-2');
      // For another server the cache is not used (and not refreshed).
      expect(await loginCacheToken(env, 'https://other.example', { now: now + 10_000 })).toBeUndefined();
      expect(idp.grants).toHaveLength(2);
    } finally {
      await idp.close();
    }
  });
});
