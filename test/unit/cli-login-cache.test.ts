import { chmod, mkdir, mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type LoginRecord,
  loginCachePath,
  ownsCacheDirectory,
  readLoginCache,
  writeLoginCache,
} from '../../lib/cli/commands/auth-cache.js';

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
