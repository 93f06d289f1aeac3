import { createHash } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Sha256 } from '@aws-crypto/sha256-js';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../lib/cli/main.js';
import { type CofferClient, CofferClientError, createClient } from '../../packages/client/src/index.js';
import { createHarness, type Harness } from '../support/harness.js';

const CREDENTIALS = {
  accessKeyId: 'AKIDCOFFERTEST0001',
  secretAccessKey: 'test/secret/access/key/never+in+a+url',
  sessionToken: 'test-session-token-never-in-a-url',
};
const REGION = 'eu-west-1';
const ENDPOINT = 'https://abc123def4.execute-api.eu-west-1.amazonaws.com';
const CANARY = 'sigv4-canary-value-5d1f';

interface Captured {
  readonly url: URL;
  readonly method: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
}

/** A client whose requests are captured and answered with `answer`. */
function capturing(answer: unknown = {}, options: { region?: string; endpoint?: string } = {}) {
  const captured: Captured[] = [];
  const client = createClient({
    endpoint: options.endpoint ?? ENDPOINT,
    auth: { iam: { credentials: CREDENTIALS, ...(options.region ? { region: options.region } : {}) } },
    cache: false,
    fetch: (async (input: string | URL | Request, init?: RequestInit) => {
      captured.push({
        url: new URL(String(input)),
        method: init?.method ?? 'GET',
        headers: Object.fromEntries(new Headers(init?.headers).entries()),
        body: init?.body as string | undefined,
      });
      return new Response(JSON.stringify(answer), {
        status: 200,
        headers: { 'content-type': 'application/json' },
      });
    }) as typeof fetch,
  });
  return { client, captured };
}

/** The Authorization header @smithy/signature-v4 computes for the captured request, at its own date. */
async function recompute(req: Captured, change: Partial<Captured> = {}): Promise<string> {
  const r = { ...req, ...change };
  // Without the sent hash header, the signer hashes the body itself: the body is checked, not the header.
  const { authorization: _a, 'x-amz-content-sha256': _h, ...headers } = r.headers;
  const amzDate = req.headers['x-amz-date'] as string;
  const signingDate = new Date(
    `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`,
  );
  const query: Record<string, string> = {};
  for (const [k, v] of r.url.searchParams) query[k] = v;
  const signer = new SignatureV4({
    service: 'execute-api',
    region: REGION,
    credentials: CREDENTIALS,
    sha256: Sha256,
  });
  const signed = await signer.sign(
    new HttpRequest({
      method: r.method,
      protocol: r.url.protocol,
      hostname: r.url.hostname,
      path: r.url.pathname,
      query,
      headers: { ...headers, host: r.url.host },
      ...(r.body !== undefined ? { body: r.body } : {}),
    }),
    { signingDate },
  );
  return signed.headers.authorization as string;
}

describe('client: SigV4 (IAM auth)', () => {
  it('when it writes a secret, the signature verifies against @smithy/signature-v4 with the same credentials', async () => {
    const { client, captured } = capturing({ path: 'team-a/db/password', version: 1, createdAt: 'x' });
    await client.put('team-a/db/password', CANARY, { tags: { env: 'prod' } });
    const req = captured[0] as Captured;
    expect(req.method).toBe('PUT');
    expect(req.url.pathname).toBe('/iam/v1/secrets/team-a/db/password');
    const auth = req.headers.authorization as string;
    expect(auth).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDCOFFERTEST0001\/\d{8}\/eu-west-1\/execute-api\/aws4_request, SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$/,
    );
    const signedHeaders = (/SignedHeaders=([^,]+)/.exec(auth)?.[1] ?? '').split(';');
    for (const h of [
      'host',
      'content-type',
      'idempotency-key',
      'x-amz-content-sha256',
      'x-amz-date',
      'x-amz-security-token',
    ]) {
      expect(signedHeaders).toContain(h);
    }
    // The body's hash is signed and sent.
    expect(req.headers['x-amz-content-sha256']).toBe(
      createHash('sha256')
        .update(req.body as string)
        .digest('hex'),
    );
    expect(await recompute(req)).toBe(auth);
    // Any change to the body, a header or the path gives another signature.
    expect(await recompute(req, { body: (req.body as string).replace(CANARY, 'other') })).not.toBe(auth);
    expect(await recompute(req, { headers: { ...req.headers, 'idempotency-key': 'other' } })).not.toBe(auth);
    expect(await recompute(req, { url: new URL(`${ENDPOINT}/iam/v1/secrets/team-b/db/password`) })).not.toBe(
      auth,
    );
  });

  it('when it reads with a query, the query is signed too', async () => {
    const { client, captured } = capturing({ path: 'a/b', version: 2, value: 'v', createdAt: 'x' });
    await client.get('a/b', { version: 2 });
    await client.listPage('team-a/', { delimiter: '/', limit: 5, cursor: 'c1' });
    for (const req of captured) {
      expect(req.url.search).not.toBe('');
      expect(await recompute(req)).toBe(req.headers.authorization);
      const other = new URL(req.url);
      other.searchParams.set(other.searchParams.keys().next().value as string, '9');
      expect(await recompute(req, { url: other })).not.toBe(req.headers.authorization);
    }
    expect(captured[0]?.url.search).toBe('?version=2');
    // The empty-body hash of a GET.
    expect(captured[0]?.headers['x-amz-content-sha256']).toBe(createHash('sha256').update('').digest('hex'));
  });

  it('when requests are signed, no secret value, key or token is in the URL', async () => {
    const { client, captured } = capturing({ results: [] });
    await client.put('team-a/x', CANARY).catch(() => {});
    await client.batchGet(['team-a/x']).catch(() => {});
    await client.get('team-a/x').catch(() => {});
    expect(captured.length).toBeGreaterThanOrEqual(3);
    for (const req of captured) {
      const url = req.url.href;
      for (const secret of [
        CANARY,
        CREDENTIALS.secretAccessKey,
        CREDENTIALS.sessionToken,
        'Signature',
        'X-Amz',
      ]) {
        expect(url).not.toContain(secret);
        expect(decodeURIComponent(url)).not.toContain(secret);
      }
      expect(req.headers['x-amz-security-token']).toBe(CREDENTIALS.sessionToken);
    }
  });

  it('when no region is given, it takes it from the execute-api host name; a custom domain needs one', async () => {
    const { client, captured } = capturing({ status: 'ok' });
    await client.whoami();
    expect(captured[0]?.headers.authorization).toContain('/eu-west-1/execute-api/');
    expect(() =>
      createClient({ endpoint: 'https://secrets.example.com', auth: { iam: { credentials: CREDENTIALS } } }),
    ).toThrow(CofferClientError);
    const custom = capturing({}, { endpoint: 'https://secrets.example.com/prod', region: 'us-east-2' });
    await custom.client.whoami();
    expect(custom.captured[0]?.url.pathname).toBe('/prod/iam/v1/whoami');
    expect(custom.captured[0]?.headers.authorization).toContain('/us-east-2/execute-api/');
  });
});

describe('client: SigV4 default credential chain', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('when no credentials are given, it signs with the default chain (here: the environment)', async () => {
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIDFROMENVIRONMENT1');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'env-secret-key');
    vi.stubEnv('AWS_SESSION_TOKEN', '');
    const captured: Headers[] = [];
    const client = createClient({
      endpoint: ENDPOINT,
      auth: { iam: { region: REGION } },
      fetch: (async (_input: string | URL | Request, init?: RequestInit) => {
        captured.push(new Headers(init?.headers));
        return new Response('{"status":"ok"}', { status: 200 });
      }) as typeof fetch,
    });
    await client.whoami();
    expect(captured[0]?.get('authorization')).toContain('Credential=AKIDFROMENVIRONMENT1/');
  });
});

describe('client: SigV4 through the app', () => {
  let h: Harness;
  let client: CofferClient;
  beforeAll(async () => {
    // As the Lambda adapter does once API Gateway's IAM authorizer has checked the signature.
    h = await createHarness({
      label: 'sigv4',
      connection: () => ({
        sourceIp: '10.0.0.1',
        iamCaller: {
          userArn: 'arn:aws:sts::123456789012:assumed-role/app-role/session-1',
          accountId: '123456789012',
        },
      }),
    });
    client = createClient({
      endpoint: ENDPOINT,
      auth: { iam: { credentials: CREDENTIALS } },
      fetch: ((input: string | URL | Request, init?: RequestInit) =>
        h.app.request(String(input), init)) as typeof fetch,
    });
  });

  it('when a workload calls with its role, the app sees the role on /iam/v1 and serves it', async () => {
    const me = await client.whoami();
    expect(me).toMatchObject({
      type: 'Role',
      id: 'arn:aws:iam::123456789012:role/app-role',
      authMethod: 'iam',
    });
    await client.put('workload/db', 'w-1');
    expect((await client.get('workload/db')).value).toBe('w-1');
    const [r] = await client.batchGet(['workload/db']);
    expect(r?.ok).toBe(true);
  });
});

describe('CLI: COFFER_AUTH=iam', () => {
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  async function run(args: string[], env: Record<string, string>) {
    let stdout = '';
    let stderr = '';
    const code = await runCli(args, {
      env,
      stdin: Object.assign(Readable.from([]), { isTTY: false }),
      stdout: { write: (s: string) => (stdout += s) },
      stderr: { write: (s: string) => (stderr += s) },
      cwd: tmpdir(),
    });
    return { code, stdout, stderr };
  }

  it('when COFFER_AUTH=iam, the CLI signs with the default chain on /iam/v1 and sends no bearer token', async () => {
    // The default credential chain reads the process environment (and caches what it found, so the
    // same credentials as in the test above).
    vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIDFROMENVIRONMENT1');
    vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'env-secret-key');
    vi.stubEnv('AWS_SESSION_TOKEN', '');
    const seen: { path: string; authorization: string; amzDate: string }[] = [];
    let status = 200;
    const server = createServer((req, res) => {
      seen.push({
        path: req.url ?? '',
        authorization: String(req.headers.authorization ?? ''),
        amzDate: String(req.headers['x-amz-date'] ?? ''),
      });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(
        status === 200
          ? JSON.stringify({
              type: 'Role',
              id: 'arn:aws:iam::123456789012:role/app-role',
              entity: 'Coffer::Role::"arn:aws:iam::123456789012:role/app-role"',
              groups: [],
              attributes: { account: '123456789012', sessionName: 'i-0abc' },
              authMethod: 'iam',
            })
          : '{"error":{"code":"unauthenticated","message":"authentication required"}}',
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const addr = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-cli-iam-'));
    await writeFile(join(dataDir, 'dev-token'), 'eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln\n');
    const env = { COFFER_ADDR: addr, COFFER_AUTH: 'iam', AWS_REGION: REGION, COFFER_DATA_DIR: dataDir };
    try {
      const who = await run(['whoami'], env);
      expect(who.code, who.stderr).toBe(0);
      expect(who.stdout).toContain('Coffer::Role::"arn:aws:iam::123456789012:role/app-role"');
      expect(seen[0]?.path).toBe('/iam/v1/whoami');
      expect(seen[0]?.authorization).toMatch(
        new RegExp(
          `^AWS4-HMAC-SHA256 Credential=AKIDFROMENVIRONMENT1/\\d{8}/${REGION}/execute-api/aws4_request, `,
        ),
      );
      expect(seen[0]?.amzDate).toMatch(/^\d{8}T\d{6}Z$/);

      status = 401;
      const refused = await run(['whoami'], env);
      expect(refused.code).toBe(4);
      expect(refused.stderr).toContain('COFFER_AUTH=iam');
      expect(seen.every((s) => !s.authorization.startsWith('Bearer'))).toBe(true);

      const bad = await run(['whoami'], { ...env, COFFER_AUTH: 'kerberos' });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('COFFER_AUTH must be "token" (the default) or "iam"');
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
