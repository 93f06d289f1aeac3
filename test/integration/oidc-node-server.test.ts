import { mkdtemp, readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { localSettings } from '../../lib/config.js';
import { parseConfig } from '../../lib/config-file.js';
import { type LocalServer, startLocalServer } from '../../lib/local/server.js';
import { jsonLogger } from '../../lib/log.js';
import { startTestIdp, type TestIdp } from '../support/oidc-idp.js';
import { accessClaims, signToken } from '../support/oidc-tokens.js';

/** A raw HTTP/1.1 request, so that headers reach the node server exactly as written (twice, huge…). */
function raw(
  url: string,
  path: string,
  headers: Record<string, string | string[]>,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: 'GET', headers }, (res) => {
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The local node server (the real HTTP stack) with COFFER_CONFIG issuers next to the dev issuer. */
describe('local server with configured issuers', () => {
  let idp: TestIdp;
  let server: LocalServer;
  let devToken: string;
  const logs: string[] = [];

  beforeAll(async () => {
    idp = await startTestIdp({ machineClients: ['svc-a'], groups: { 'svc-a': ['eng'] } });
    const config = parseConfig('', {
      env: {
        COFFER_OIDC_ISSUER: idp.issuer,
        COFFER_OIDC_ALIAS: 'corp',
        COFFER_OIDC_AUDIENCE: 'coffer-api',
        COFFER_OIDC_GROUP_MAP: 'eng=engineers',
        COFFER_OIDC_ALLOW_HTTP_LOOPBACK: 'true',
      },
    });
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-oidc-server-'));
    const settings = localSettings({
      COFFER_DATA_DIR: dataDir,
      COFFER_DYNAMODB_ENDPOINT: inject('dynamodbEndpoint'),
    });
    server = await startLocalServer(
      { ...settings, port: 0 },
      jsonLogger((l) => logs.push(l)),
      config,
    );
    devToken = (await readFile(server.tokenFile, 'utf8')).trim();
  });

  afterAll(async () => {
    await server?.stop();
    await idp?.close();
  });

  it('when an IdP token and the dev token are sent over HTTP, both are accepted', async () => {
    const token = await idp.clientCredentialsToken('svc-a');
    const oidc = await raw(server.url, '/v1/whoami', { authorization: `Bearer ${token}` });
    expect(oidc.status).toBe(200);
    expect(JSON.parse(oidc.body)).toMatchObject({
      id: 'corp:svc-a',
      groups: ['engineers'],
      authMethod: 'oidc',
    });
    const dev = await raw(server.url, '/v1/whoami', { authorization: `Bearer ${devToken}` });
    expect(JSON.parse(dev.body)).toMatchObject({
      id: 'dev:dev-admin',
      groups: ['admins'],
      authMethod: 'dev',
    });
  });

  it('when two Authorization headers arrive, it is 401 (node keeps only the first; the app sees both)', async () => {
    const token = await idp.clientCredentialsToken('svc-a');
    for (const pair of [
      [`Bearer ${token}`, `Bearer ${token}`],
      [`Bearer ${token}`, `Bearer ${devToken}`],
      [`Bearer ${token}`, ''],
    ]) {
      const res = await raw(server.url, '/v1/whoami', { authorization: pair });
      expect(res.status).toBe(401);
      expect(JSON.parse(res.body).error).toMatchObject({
        code: 'unauthenticated',
        message: 'authentication required',
      });
    }
  });

  it('when a token is over 8 KiB, it reaches the app and gets 401, not 431', async () => {
    for (const size of [9 * 1024, 32 * 1024]) {
      const token = await signToken(
        { ...idp.signingKey, alg: 'RS256' },
        accessClaims(idp.issuer, 'coffer-api', 'svc-a', { padding: 'x'.repeat(size) }),
      );
      const res = await raw(server.url, '/v1/whoami', { authorization: `Bearer ${token}` });
      expect(res.status, `${size}`).toBe(401);
      expect(JSON.parse(res.body).error.code).toBe('unauthenticated');
    }
  });

  it('when the header is malformed, it is 401', async () => {
    for (const authorization of [
      'Bearer',
      `Basic ${Buffer.from('a:b').toString('base64')}`,
      'Bearer a.b',
      'Bearer ä.ö.ü',
    ]) {
      const res = await raw(server.url, '/v1/whoami', { authorization });
      expect(res.status, authorization).toBe(401);
    }
  });
});
