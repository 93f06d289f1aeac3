import { once } from 'node:events';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { type CliIo, runCli } from '../../lib/cli/main.js';
import { jsonLogger } from '../../lib/log.js';
import { createHarness, type Harness } from '../support/harness.js';

/*
 * `coffer meta` changes metadata without a new version; `coffer purge` (Cedar `admin`) removes a
 * soft-deleted secret at once so its path can be reused. Existence rules (brief §6): a caller who
 * may not see the secret gets 404, one who may see it but not administer it 403.
 */
const POLICIES = fileURLToPath(new URL('../../policies', import.meta.url));

let h: Harness;
let server: ServerType;
let dir: string;
const tokens: Record<string, string> = {};

beforeAll(async () => {
  const policyDir = await mkdtemp(join(tmpdir(), 'coffer-purge-policies-'));
  await copyFile(join(POLICIES, 'schema.cedarschema'), join(policyDir, 'schema.cedarschema'));
  await copyFile(join(POLICIES, 'admins.cedar'), join(policyDir, 'admins.cedar'));
  await writeFile(
    join(policyDir, 'viewers.cedar'),
    `permit (principal in Coffer::Group::"viewers", action == Coffer::Action::"readMetadata", resource);`,
  );
  const authorizer = await CedarAuthorizer.fromDir(policyDir, { logger: jsonLogger(() => {}) });
  h = await createHarness({ label: 'metapurge', authorizer });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  dir = await mkdtemp(join(tmpdir(), 'coffer-metapurge-'));
  tokens.admin = h.token;
  tokens.viewer = await h.issuer.mint({ subject: 'vera', groups: ['viewers'] });
  tokens.nobody = await h.issuer.mint({ subject: 'nora', groups: [] });
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

async function cli(args: string[], token = tokens.admin as string) {
  const o = { stdout: '', stderr: '' };
  const io: CliIo = {
    env: {
      COFFER_ADDR: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      COFFER_TOKEN: token,
      COFFER_DATA_DIR: join(dir, 'data'),
    },
    cwd: dir,
    stdin: Readable.from([]),
    stdout: { write: (s: string) => (o.stdout += s) },
    stderr: { write: (s: string) => (o.stderr += s) },
  };
  return { code: await runCli(args, io), ...o };
}

describe('coffer meta', () => {
  it('when tags, description and max versions are changed, no version is written and the changes hold', async () => {
    expect((await cli(['put', 'm/app', 'v1', '--tag', 'env=dev', '--tag', 'team=a'])).code).toBe(0);
    const r = await cli([
      '--json',
      'meta',
      'm/app',
      '--tag',
      'env=prod',
      '--tag',
      'constructor=x',
      '--untag',
      'team',
      '--description',
      'the app',
      '--max-versions',
      '5',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const meta = JSON.parse(r.stdout);
    expect(meta).toMatchObject({ currentVersion: 1, description: 'the app', maxVersions: 5 });
    expect(meta.tags).toEqual({ env: 'prod', constructor: 'x' });
    const shown = await cli(['meta', 'm/app']);
    expect(shown.stdout).toContain('current version 1');
    expect(shown.stdout).toContain('env=prod');
    expect(shown.stdout).toContain('description: the app');
    expect((await h.call('GET', '/v1/meta/m/app')).body.versions).toHaveLength(1);
  });

  it('when a bad option is given, it is a usage error', async () => {
    expect((await cli(['meta', 'm/app', '--max-versions', '0'])).code).toBe(2);
    expect((await cli(['meta', 'm/app', '--tag', 'novalue'])).code).toBe(2);
  });
});

describe('coffer purge and POST /v1/purge', () => {
  it('when an admin purges a soft-deleted secret, its path can be reused at once', async () => {
    expect((await cli(['put', 'p/reuse', 'old', '--tag', 'k=v'])).code).toBe(0);
    expect((await cli(['put', 'p/reuse', 'older'])).code).toBe(0);
    expect((await cli(['rm', 'p/reuse'])).code).toBe(0);
    expect((await cli(['put', 'p/reuse', 'new'])).code).toBe(6);
    const purged = await cli(['--json', 'purge', 'p/reuse']);
    expect(purged.code, purged.stderr).toBe(0);
    expect(JSON.parse(purged.stdout)).toEqual({ path: 'p/reuse', purged: true });
    expect(await h.store.listVersions('p/reuse')).toEqual([]);
    const put = await h.call('PUT', '/v1/secrets/p/reuse', { body: { value: 'fresh' } });
    expect(put.status).toBe(200);
    expect(put.body.version).toBe(1);
    expect((await h.call('GET', '/v1/meta/p/reuse')).body.tags).toEqual({});
  });

  it('when the secret is not soft-deleted or does not exist, purge is 404 and removes nothing', async () => {
    expect((await h.call('PUT', '/v1/secrets/p/live', { body: { value: 'x' } })).status).toBe(200);
    const live = await h.call('POST', '/v1/purge/p/live');
    expect(live.status).toBe(404);
    expect(live.body.error.code).toBe('not_found');
    expect((await h.call('GET', '/v1/secrets/p/live')).body.value).toBe('x');
    expect((await h.call('POST', '/v1/purge/p/never')).status).toBe(404);
    expect((await cli(['purge', 'p/live'])).code).toBe(3);
  });

  it('when a caller may see the secret but not administer it, 403; when it may not see it, the 404 of a missing one', async () => {
    expect((await h.call('PUT', '/v1/secrets/p/guarded', { body: { value: 'x' } })).status).toBe(200);
    expect((await h.call('DELETE', '/v1/secrets/p/guarded')).status).toBe(200);
    const viewer = await h.call('POST', '/v1/purge/p/guarded', { token: tokens.viewer as string });
    expect(viewer.status).toBe(403);
    expect(viewer.body.error.code).toBe('forbidden');
    const nobody = await h.call('POST', '/v1/purge/p/guarded', { token: tokens.nobody as string });
    const missing = await h.call('POST', '/v1/purge/p/absent', { token: tokens.nobody as string });
    expect(nobody.status).toBe(404);
    expect({ ...nobody.body.error, requestId: '' }).toEqual({ ...missing.body.error, requestId: '' });
    expect((await cli(['purge', 'p/guarded'], tokens.viewer as string)).code).toBe(5);
    // Still there, still restorable.
    expect((await h.call('POST', '/v1/restore/p/guarded')).status).toBe(200);
  });

  it('when GET is sent to the purge route, it is 405', async () => {
    expect((await h.call('GET', '/v1/purge/p/guarded')).status).toBe(405);
  });
});
