import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../../lib/cli/main.js';
import { localSettings } from '../../lib/config.js';
import { parseConfig } from '../../lib/config-file.js';
import { ConfigError } from '../../lib/errors.js';
import { freePort } from '../../lib/local/dynamodb-local.js';
import { type LocalServer, startLocalServer } from '../../lib/local/server.js';
import { jsonLogger } from '../../lib/log.js';
import { CofferUnauthenticatedError, createClient } from '../../packages/client/src/index.js';
import {
  CertFactory,
  dateStamp,
  opensslAvailable,
  type TestCa,
  type TestLeaf,
} from '../support/openssl-certs.js';

/*
 * Client certificates end to end with tools no one here wrote: openssl makes the CAs and
 * certificates, the local server listens with COFFER_TLS_*, and curl, the SDK and the CLI call it.
 */

const run = promisify(execFile);

function curlAvailable(): boolean {
  try {
    execFileSync('curl', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const TOOLS = opensslAvailable() && curlAvailable();
if (!TOOLS) {
  console.warn('mtls-local: SKIPPED — the openssl or curl command is missing (.ci/run installs both)');
}

const ROOT = join(import.meta.dirname, '../..');
const ACME = 'CN=Acme Issuing CA,O=Acme';
const PARTNER = 'CN=Partner CA,O=Partner';

describe.skipIf(!TOOLS)(
  TOOLS
    ? 'the local server over HTTPS with client certificates (openssl, curl, SDK, CLI)'
    : 'the local server over HTTPS with client certificates — SKIPPED: openssl or curl is not installed',
  () => {
    let certs: CertFactory;
    let serverCa: TestCa;
    let serverLeaf: TestLeaf;
    let bundle: string;
    let dataDir: string;
    let server: LocalServer;
    let devToken: string;
    const leaves: Record<string, TestLeaf> = {};
    const logs: string[] = [];

    /** GET through curl with the server's CA, and a client certificate when named. */
    async function curl(
      path: string,
      options: { leaf?: TestLeaf; headers?: string[] } = {},
    ): Promise<{ status: number; body: Record<string, unknown> }> {
      const args = ['-sS', '--cacert', join(serverCa.dir, 'ca.pem'), '-w', '\n%{http_code}'];
      if (options.leaf) args.push('--cert', options.leaf.certPath, '--key', options.leaf.keyPath);
      for (const header of options.headers ?? []) args.push('-H', header);
      const { stdout } = await run('curl', [...args, `${server.url}${path}`], { encoding: 'utf8' });
      const at = stdout.lastIndexOf('\n');
      return { status: Number(stdout.slice(at + 1)), body: JSON.parse(stdout.slice(0, at)) };
    }

    async function cli(args: string[], env: Record<string, string>) {
      let stdout = '';
      let stderr = '';
      const code = await runCli(args, {
        env: { COFFER_ADDR: server.url, COFFER_DATA_DIR: dataDir, ...env },
        stdin: Object.assign(Readable.from([]), { isTTY: false }),
        stdout: { write: (s: string) => (stdout += s) },
        stderr: { write: (s: string) => (stderr += s) },
        cwd: dataDir,
      } as unknown as Parameters<typeof runCli>[1]);
      return { code, stdout, stderr };
    }

    const serialOf = (leaf: TestLeaf) =>
      (certs.inspect(leaf.certPath, ['-serial']).split('=')[1] as string).replace(/^0+/, '');
    const fingerprintOf = (leaf: TestLeaf) =>
      certs.inspect(leaf.certPath, ['-fingerprint', '-sha256']).split('=')[1] as string;

    beforeAll(async () => {
      certs = await CertFactory.create();
      serverCa = await certs.ca('local', '/CN=Coffer Local Test CA');
      serverLeaf = await certs.leaf(serverCa, 'server', {
        subject: '/CN=127.0.0.1',
        eku: 'serverAuth',
        sans: ['IP:127.0.0.1', 'DNS:localhost'],
      });
      const acme = await certs.ca('acme', '/O=Acme/CN=Acme Issuing CA');
      const partner = await certs.ca('partner', '/O=Partner/CN=Partner CA');
      const rogue = await certs.ca('rogue', '/O=Acme/CN=Rogue CA');
      const acmeSan = ['URI:spiffe://acme.example/ci/agent'];
      const day = 86_400_000;
      leaves.agent = await certs.leaf(acme, 'agent', { subject: '/O=Acme/CN=agent-1', sans: acmeSan });
      leaves.partnerAgent = await certs.leaf(partner, 'agent', {
        subject: '/O=Acme/CN=agent-1',
        sans: ['URI:spiffe://partner.example/agent'],
      });
      leaves.expired = await certs.leaf(acme, 'expired', {
        subject: '/O=Acme/CN=expired',
        sans: acmeSan,
        startDate: dateStamp(new Date(Date.now() - 30 * day)),
        endDate: dateStamp(new Date(Date.now() - day)),
      });
      leaves.rogue = await certs.leaf(rogue, 'agent', { subject: '/O=Acme/CN=agent-1', sans: acmeSan });
      leaves.revoked = await certs.leaf(acme, 'revoked', { subject: '/O=Acme/CN=revoked', sans: acmeSan });
      // No extended key usage at all: TLS accepts it for any purpose, Coffer wants clientAuth.
      leaves.noClientAuth = await certs.leaf(acme, 'no-eku', {
        subject: '/O=Acme/CN=no-eku',
        eku: null,
        sans: acmeSan,
      });
      // serverAuth only: TLS itself refuses it for a client (OpenSSL's purpose check).
      leaves.serverOnly = await certs.leaf(acme, 'server-only', {
        subject: '/O=Acme/CN=server-only',
        eku: 'serverAuth',
        sans: acmeSan,
      });
      leaves.laptop = await certs.leaf(acme, 'laptop', {
        subject: '/O=Acme/CN=laptop-42',
        sans: ['DNS:laptop-42.corp.acme.example'],
      });

      bundle = join(certs.root, 'client-cas.pem');
      await writeFile(bundle, `${acme.pem}${partner.pem}`);
      const config = parseConfig(
        JSON.stringify({
          issuers: [],
          mtls: {
            allowedSans: ['URI:spiffe://acme.example/*', 'URI:spiffe://partner.example/*'],
            revoked: [{ issuer: ACME, serial: serialOf(leaves.revoked) }],
          },
        }),
        { source: 'test', format: 'json', env: {} },
      );
      dataDir = await mkdtemp(join(tmpdir(), 'coffer-mtls-local-'));
      const settings = localSettings({
        COFFER_DATA_DIR: dataDir,
        COFFER_DYNAMODB_ENDPOINT: inject('dynamodbEndpoint'),
        COFFER_TLS_CERT: serverLeaf.certPath,
        COFFER_TLS_KEY: serverLeaf.keyPath,
        COFFER_TLS_CLIENT_CA: bundle,
      });
      server = await startLocalServer(
        { ...settings, port: 0 },
        jsonLogger((l) => logs.push(l)),
        config,
      );
      devToken = (await readFile(server.tokenFile, 'utf8')).trim();
    }, 180_000);

    afterAll(async () => {
      await server?.stop();
      await certs?.close();
      if (dataDir) await rm(dataDir, { recursive: true, force: true });
    });

    it('serves HTTPS: the printed address is https://', () => {
      expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    });

    it('when curl presents a certificate from the configured CA, whoami shows its principal and tags', async () => {
      const me = await curl('/v1/whoami', { leaf: leaves.agent });
      expect(me.status).toBe(200);
      expect(me.body).toMatchObject({
        type: 'Workload',
        id: `cert:${ACME}:CN=agent-1,O=Acme`,
        authMethod: 'mtls',
        kind: 'certificate',
        issuer: ACME,
        groups: [],
        attributes: {
          subject: 'CN=agent-1,O=Acme',
          subjectCN: 'agent-1',
          serial: serialOf(leaves.agent as TestLeaf),
          fingerprint: fingerprintOf(leaves.agent as TestLeaf),
          sanUri: 'spiffe://acme.example/ci/agent',
        },
      });
    });

    it('when two CAs issue certificates with the same subject, they are two principals', async () => {
      const acme = await curl('/v1/whoami', { leaf: leaves.agent });
      const partner = await curl('/v1/whoami', { leaf: leaves.partnerAgent });
      expect(partner.status).toBe(200);
      expect(partner.body.id).toBe(`cert:${PARTNER}:CN=agent-1,O=Acme`);
      expect(partner.body.id).not.toBe(acme.body.id);
    });

    it('when curl presents no certificate, it is 401 — unless it sends a bearer token', async () => {
      const none = await curl('/v1/whoami');
      expect(none.status).toBe(401);
      expect(none.body.error).toMatchObject({ code: 'unauthenticated', message: 'authentication required' });
      const bearer = await curl('/v1/whoami', { headers: [`Authorization: Bearer ${devToken}`] });
      expect(bearer.status).toBe(200);
      expect(bearer.body).toMatchObject({ id: 'dev:dev-admin', authMethod: 'dev' });
    });

    it('refuses, with the same 401, an expired certificate, one from another CA, a revoked serial, ones without clientAuth and one with a SAN outside the patterns', async () => {
      for (const name of ['expired', 'rogue', 'revoked', 'noClientAuth', 'serverOnly', 'laptop']) {
        const res = await curl('/v1/whoami', { leaf: leaves[name] as TestLeaf });
        expect(res.status, name).toBe(401);
        expect(res.body.error, name).toMatchObject({
          code: 'unauthenticated',
          message: 'authentication required',
        });
      }
      const reasons = logs
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.method === 'mtls')
        .map((l) => l.reason);
      expect(reasons).toEqual(
        expect.arrayContaining([
          'certificate_not_verified',
          'certificate_revoked',
          'certificate_not_for_client_auth',
          'san_not_allowed',
        ]),
      );
    });

    it('when a header claims a certificate identity, it is ignored', async () => {
      const pem = encodeURIComponent((leaves.agent as TestLeaf).pem);
      const headers = [
        `X-Client-Cert: ${pem}`,
        `X-SSL-Client-Cert: ${pem}`,
        `X-Amzn-Mtls-Clientcert: ${pem}`,
        'X-SSL-Client-Verify: SUCCESS',
        `X-SSL-Client-S-DN: CN=agent-1,O=Acme`,
      ];
      expect((await curl('/v1/whoami', { headers })).status).toBe(401);
      // With a certificate of another CA, the header does not lend it the agent's identity.
      expect((await curl('/v1/whoami', { leaf: leaves.rogue as TestLeaf, headers })).status).toBe(401);
      // With a bearer token, the caller is the token's.
      const bearer = await curl('/v1/whoami', { headers: [...headers, `Authorization: Bearer ${devToken}`] });
      expect(bearer.body.id).toBe('dev:dev-admin');
    });

    it('when the SDK is given a client certificate and the server CA, whoami is the certificate principal; a refused one is CofferUnauthenticatedError', async () => {
      const agent = leaves.agent as TestLeaf;
      const ca = await readFile(join(serverCa.dir, 'ca.pem'));
      const coffer = createClient({
        endpoint: server.url,
        tls: { cert: agent.pem, key: await readFile(agent.keyPath), ca },
        cache: false,
      });
      expect(await coffer.whoami()).toMatchObject({
        id: `cert:${ACME}:CN=agent-1,O=Acme`,
        authMethod: 'mtls',
      });

      const expired = leaves.expired as TestLeaf;
      const refused = createClient({
        endpoint: server.url,
        tls: { cert: expired.pem, key: await readFile(expired.keyPath, 'utf8'), ca },
        cache: false,
      });
      await expect(refused.whoami()).rejects.toBeInstanceOf(CofferUnauthenticatedError);

      // The CA alone, for a self-signed local server, with a bearer token.
      const withToken = createClient({
        endpoint: server.url,
        auth: { token: devToken },
        tls: { ca },
        cache: false,
      });
      expect(await withToken.whoami()).toMatchObject({ id: 'dev:dev-admin' });
      // Without the CA the server's certificate is not trusted: a network error, not a 401.
      const untrusted = createClient({
        endpoint: server.url,
        auth: { token: devToken },
        cache: false,
        retry: { maxAttempts: 1 },
      });
      await expect(untrusted.whoami()).rejects.toMatchObject({ code: 'unreachable' });
    });

    it('when the CLI is given --cert, --key and --cacert (or COFFER_CLIENT_CERT, COFFER_CLIENT_KEY, COFFER_CACERT), it authenticates with the certificate alone', async () => {
      const agent = leaves.agent as TestLeaf;
      const cacert = join(serverCa.dir, 'ca.pem');
      const flags = await cli(
        ['--json', '--cert', agent.certPath, '--key', agent.keyPath, '--cacert', cacert, 'whoami'],
        {},
      );
      expect(flags.stderr).toBe('');
      expect(flags.code).toBe(0);
      // The data dir's dev token is on disk and the server is loopback, yet only the certificate counts.
      expect(JSON.parse(flags.stdout)).toMatchObject({
        id: `cert:${ACME}:CN=agent-1,O=Acme`,
        authMethod: 'mtls',
      });

      const env = await cli(['whoami'], {
        COFFER_CLIENT_CERT: (leaves.partnerAgent as TestLeaf).certPath,
        COFFER_CLIENT_KEY: (leaves.partnerAgent as TestLeaf).keyPath,
        COFFER_CACERT: cacert,
      });
      expect(env.code).toBe(0);
      expect(env.stdout).toContain(
        `Coffer::Workload::${JSON.stringify(`cert:${PARTNER}:CN=agent-1,O=Acme`)}`,
      );

      const expired = leaves.expired as TestLeaf;
      const refused = await cli(['get', 'a/b'], {
        COFFER_CLIENT_CERT: expired.certPath,
        COFFER_CLIENT_KEY: expired.keyPath,
        COFFER_CACERT: cacert,
      });
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain(`the server refused the client certificate ${expired.certPath}`);

      // The CA alone: the local dev token is sent, as to any loopback server.
      const caOnly = await cli(['--cacert', cacert, 'whoami', '--json'], {});
      expect(JSON.parse(caOnly.stdout)).toMatchObject({ id: 'dev:dev-admin' });

      const halfPair = await cli(['--cert', agent.certPath, '--cacert', cacert, 'whoami'], {});
      expect(halfPair.code).toBe(2);
      expect(halfPair.stderr).toContain('a client certificate needs its key');
    });

    it("when the client CA bundle holds two CAs with one subject DN, or the key is not the certificate's, the start is refused in one line", async () => {
      const twin = await certs.ca('twin', '/O=Acme/CN=Acme Issuing CA');
      const twins = join(certs.root, 'twins.pem');
      await writeFile(twins, `${await readFile(bundle, 'utf8')}${twin.pem}`);
      const dir = await mkdtemp(join(tmpdir(), 'coffer-mtls-refused-'));
      const start = (env: Record<string, string>) =>
        startLocalServer(
          {
            ...localSettings({
              COFFER_DATA_DIR: dir,
              COFFER_DYNAMODB_ENDPOINT: inject('dynamodbEndpoint'),
              ...env,
            }),
            port: 0,
          },
          jsonLogger(() => {}),
        );
      const tls = { COFFER_TLS_CERT: serverLeaf.certPath, COFFER_TLS_KEY: serverLeaf.keyPath };
      await expect(start({ ...tls, COFFER_TLS_CLIENT_CA: twins })).rejects.toThrow(
        /the client CA bundle holds two CAs named "CN=Acme Issuing CA,O=Acme"/,
      );
      await expect(start({ ...tls, COFFER_TLS_KEY: (leaves.agent as TestLeaf).keyPath })).rejects.toThrow(
        'COFFER_TLS_CERT and COFFER_TLS_KEY must be a PEM certificate and its own private key (unencrypted)',
      );
      await expect(start({ ...tls, COFFER_TLS_CLIENT_CA: join(dir, 'missing.pem') })).rejects.toBeInstanceOf(
        ConfigError,
      );
      await rm(dir, { recursive: true, force: true });
    });

    it('when `coffer server --dev` gets COFFER_TLS_*, it listens on https:// and says how the CLI trusts it; a certificate without its key is one line', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'coffer-mtls-cli-server-'));
      const port = await freePort();
      // The CLI as installed: bin/coffer.js runs the build, which the global setup keeps current.
      const child = spawn(process.execPath, [join(ROOT, 'bin/coffer.js'), 'server', '--dev'], {
        cwd: ROOT,
        env: {
          ...process.env,
          COFFER_DATA_DIR: dir,
          COFFER_PORT: String(port),
          COFFER_DYNAMODB_ENDPOINT: inject('dynamodbEndpoint'),
          COFFER_TLS_CERT: serverLeaf.certPath,
          COFFER_TLS_KEY: serverLeaf.keyPath,
          COFFER_TLS_CLIENT_CA: bundle,
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr?.on('data', (d) => {
        stderr += d;
      });
      try {
        const deadline = Date.now() + 120_000;
        while (!stderr.includes('Try:')) {
          if (child.exitCode !== null || Date.now() > deadline)
            throw new Error(`server did not start: ${stderr}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        expect(stderr).toContain(`Coffer listening on https://127.0.0.1:${port}\n`);
        expect(stderr).toContain('COFFER_CACERT');
        expect(stderr).toContain(`Client certificates: verified against ${bundle}`);
        const { stdout } = await run(
          'curl',
          [
            '-sS',
            '--cacert',
            join(serverCa.dir, 'ca.pem'),
            '--cert',
            (leaves.agent as TestLeaf).certPath,
            '--key',
            (leaves.agent as TestLeaf).keyPath,
            `https://127.0.0.1:${port}/v1/whoami`,
          ],
          { encoding: 'utf8' },
        );
        expect(JSON.parse(stdout)).toMatchObject({ id: `cert:${ACME}:CN=agent-1,O=Acme` });
        // The CLI as a process: it answers and exits (the https agent's idle sockets hold nothing).
        const started = Date.now();
        const cliRun = await run(process.execPath, [join(ROOT, 'bin/coffer.js'), '--json', 'whoami'], {
          cwd: ROOT,
          env: {
            ...process.env,
            COFFER_ADDR: `https://127.0.0.1:${port}`,
            COFFER_CLIENT_CERT: (leaves.agent as TestLeaf).certPath,
            COFFER_CLIENT_KEY: (leaves.agent as TestLeaf).keyPath,
            COFFER_CACERT: join(serverCa.dir, 'ca.pem'),
          },
          encoding: 'utf8',
          timeout: 60_000,
        });
        expect(JSON.parse(cliRun.stdout)).toMatchObject({ id: `cert:${ACME}:CN=agent-1,O=Acme` });
        expect(Date.now() - started).toBeLessThan(60_000);
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
      }

      const half = await run(process.execPath, [join(ROOT, 'bin/coffer.js'), 'server', '--dev'], {
        cwd: ROOT,
        env: { ...process.env, COFFER_DATA_DIR: dir, COFFER_TLS_CERT: serverLeaf.certPath },
        encoding: 'utf8',
      }).then(
        () => ({ code: 0, stderr: '' }),
        (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
      );
      expect(half.code).not.toBe(0);
      expect(half.stderr.trim().split('\n')).toEqual([
        'coffer: COFFER_TLS_CERT is set without COFFER_TLS_KEY: HTTPS needs both the certificate and its key (config_error)',
      ]);
      await rm(dir, { recursive: true, force: true });
    }, 240_000);
  },
);
