import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CofferClientError,
  CofferNotFoundError,
  CofferUnavailableError,
  createClient,
} from '../../packages/client/src/index.js';
import { CertFactory, opensslAvailable, type TestCa } from '../support/openssl-certs.js';

const HAS_OPENSSL = opensslAvailable();
if (!HAS_OPENSSL) console.warn('client-tls: SKIPPED — the openssl command is missing (.ci/run installs it)');

describe('createClient with tls: configuration', () => {
  const invalid = (options: Parameters<typeof createClient>[0]) => {
    try {
      createClient(options);
    } catch (err) {
      expect(err).toBeInstanceOf(CofferClientError);
      expect((err as CofferClientError).code).toBe('invalid_config');
      return (err as Error).message;
    }
    throw new Error('expected invalid_config');
  };

  it('when a certificate comes without its key, or the endpoint is http, or a custom fetch is given, it is invalid_config', () => {
    expect(invalid({ endpoint: 'https://c.example', tls: { cert: 'x' } })).toMatch(/cert and key/);
    expect(invalid({ endpoint: 'http://127.0.0.1:8270', tls: { cert: 'x', key: 'y' } })).toMatch(
      /https endpoint/,
    );
    expect(invalid({ endpoint: 'https://c.example', tls: { ca: 'x' }, auth: { token: 't' }, fetch })).toMatch(
      /custom fetch/,
    );
    expect(invalid({ endpoint: 'https://c.example', tls: {}, auth: { token: 't' } })).toMatch(
      /cert and key, or ca/,
    );
  });

  it('when there is no auth, only a client certificate may stand in; iam never goes with one', () => {
    expect(invalid({ endpoint: 'https://c.example' })).toMatch(/auth takes exactly one/);
    expect(invalid({ endpoint: 'https://c.example', tls: { ca: 'x' } })).toMatch(/auth takes exactly one/);
    expect(
      invalid({
        endpoint: 'https://c.example',
        tls: { cert: 'x', key: 'y' },
        auth: { iam: { region: 'eu-west-1' } },
      }),
    ).toMatch(/iam and a tls client certificate/);
    expect(() => createClient({ endpoint: 'https://c.example', tls: { cert: 'x', key: 'y' } })).not.toThrow();
  });
});

describe.skipIf(!HAS_OPENSSL)(
  HAS_OPENSSL
    ? 'createClient with tls: requests over node:https behave as over fetch'
    : 'createClient with tls — SKIPPED: openssl is not installed',
  () => {
    let certs: CertFactory;
    let ca: TestCa;
    let server: Server;
    let endpoint: string;
    const seen: { url: string; authorization?: string; body: string; peerCert: boolean }[] = [];
    let answers: ((res: import('node:http').ServerResponse) => void)[] = [];

    beforeAll(async () => {
      certs = await CertFactory.create();
      ca = await certs.ca('srv', '/CN=Test Server CA');
      const leaf = await certs.leaf(ca, 'server', {
        subject: '/CN=127.0.0.1',
        eku: 'serverAuth',
        sans: ['IP:127.0.0.1'],
      });
      const client = await certs.leaf(ca, 'client', { subject: '/CN=client', sans: ['DNS:client.example'] });
      server = createServer(
        {
          cert: leaf.pem,
          key: await readFile(leaf.keyPath),
          ca: ca.pem,
          requestCert: true,
          rejectUnauthorized: false,
        },
        (req, res) => {
          let body = '';
          req.on('data', (d) => {
            body += d;
          });
          req.on('end', () => {
            const socket = req.socket as import('node:tls').TLSSocket;
            seen.push({
              url: req.url ?? '',
              ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
              body,
              peerCert: socket.getPeerX509Certificate() !== undefined,
            });
            const answer = answers.shift();
            if (answer) answer(res);
            else res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
          });
        },
      );
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      endpoint = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      clientPair = { cert: client.pem, key: await readFile(client.keyPath, 'utf8') };
    }, 60_000);
    let clientPair: { cert: string; key: string };

    afterAll(async () => {
      server?.closeAllConnections();
      await new Promise((r) => server?.close(r));
      await certs?.close();
    });

    it('when only a client certificate is configured, it is presented and no Authorization header is sent; a body arrives as sent', async () => {
      seen.length = 0;
      const coffer = createClient({ endpoint, tls: { ...clientPair, ca: ca.pem }, cache: false });
      answers = [
        (res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"path":"a/b","version":1}'),
      ];
      expect(await coffer.put('a/b', 'v')).toEqual({ path: 'a/b', version: 1 });
      expect(seen[0]).toMatchObject({ url: '/v1/secrets/a/b', peerCert: true, body: '{"value":"v"}' });
      expect(seen[0]?.authorization).toBeUndefined();
    });

    it('when the server answers 503 then 200, a read is retried; a 404 is the typed error, a 204 has no body', async () => {
      const coffer = createClient({
        endpoint,
        auth: { token: 't' },
        tls: { ca: ca.pem },
        cache: false,
        retry: { baseDelayMs: 1, maxDelayMs: 5 },
      });
      seen.length = 0;
      answers = [
        (res) =>
          res
            .writeHead(503, { 'content-type': 'application/json', 'retry-after': '0' })
            .end('{"error":{"code":"audit_unavailable","message":"audit unavailable","requestId":"r1"}}'),
      ];
      expect(await coffer.health()).toEqual({ status: 'ok' });
      expect(seen).toHaveLength(2);
      expect(seen[0]?.authorization).toBe('Bearer t');

      answers = [
        (res) =>
          res
            .writeHead(404, { 'content-type': 'application/json' })
            .end('{"error":{"code":"not_found","message":"secret not found","requestId":"r2"}}'),
      ];
      const err = await coffer.get('x/y').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CofferNotFoundError);
      expect((err as CofferNotFoundError).requestId).toBe('r2');

      answers = [(res) => res.writeHead(204).end()];
      expect(await coffer.health()).toEqual({});

      answers = Array.from(
        { length: 3 },
        () => (res: import('node:http').ServerResponse) => res.writeHead(503).end('not json'),
      );
      await expect(coffer.health()).rejects.toBeInstanceOf(CofferUnavailableError);
    });

    it('when the server does not answer in time, it is a timeout; when its CA is not given, it is unreachable', async () => {
      const slow = createClient({
        endpoint,
        auth: { token: 't' },
        tls: { ca: ca.pem },
        cache: false,
        timeoutMs: 200,
        retry: { maxAttempts: 1 },
      });
      answers = [() => {}];
      await expect(slow.health()).rejects.toMatchObject({ code: 'timeout' });

      const otherCa = await certs.ca('other', '/CN=Other CA');
      const untrusting = createClient({
        endpoint,
        tls: { ...clientPair, ca: otherCa.pem },
        cache: false,
        retry: { maxAttempts: 1 },
      });
      await expect(untrusting.health()).rejects.toMatchObject({ code: 'unreachable' });
    });
  },
);
