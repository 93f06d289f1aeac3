import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KmsEngine } from './fake-kms.js';

/*
 * The fake KMS engine behind KMS's own wire protocol (AWS JSON 1.1: `POST /` with
 * `X-Amz-Target: TrentService.<Operation>`, blobs as base64), for code that makes its own KMS
 * client — a bundled Lambda carries its own copy of the SDK, which aws-sdk-client-mock cannot reach.
 * Point it here with AWS_ENDPOINT_URL_KMS.
 */

/** Request and response members that are blobs (base64 on the wire). */
const BLOBS = new Set(['CiphertextBlob', 'Plaintext', 'Message', 'Signature', 'PublicKey', 'Mac']);

type Operation = keyof KmsEngine['operations'];

export interface FakeKmsServer {
  readonly endpoint: string;
  /** Every request received: the operation and its decoded input. */
  readonly requests: { operation: string; input: Record<string, unknown> }[];
  /** Answers every later call of `operation` with this KMS error (until `clearFailures`). */
  failWith(operation: Operation, errorName: string, message?: string): void;
  clearFailures(): void;
  /** A JWKS (or anything) served as JSON at `path` of the same server (an OIDC issuer's keys). */
  serveJson(path: string, body: unknown): void;
  close(): Promise<void>;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function decode(input: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(input).map(([k, v]) => [
      k,
      BLOBS.has(k) && typeof v === 'string' ? new Uint8Array(Buffer.from(v, 'base64')) : v,
    ]),
  );
}

function encode(output: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(output).map(([k, v]) => [
      k,
      v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v,
    ]),
  );
}

export interface FakeKmsServerOptions {
  /**
   * Milliseconds to wait before answering each KMS call (benchmarks: KMS's own latency, which the
   * engine has none of). Default: none.
   */
  readonly delayMs?: () => number;
}

export async function startFakeKmsServer(
  engine: KmsEngine,
  options: FakeKmsServerOptions = {},
): Promise<FakeKmsServer> {
  const failures = new Map<string, { name: string; message: string }>();
  const json = new Map<string, unknown>();
  const requests: FakeKmsServer['requests'] = [];

  const server: Server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      const send = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', ...headers });
        res.end(JSON.stringify(payload));
      };
      if (req.method === 'GET' && json.has(req.url ?? '')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(json.get(req.url ?? '')));
        return;
      }
      const target = String(req.headers['x-amz-target'] ?? '');
      const operation = target.replace(/^TrentService\./, '') as Operation;
      const run = engine.operations[operation];
      if (req.method !== 'POST' || !target.startsWith('TrentService.') || !run) {
        send(400, { __type: 'UnknownOperationException', message: target });
        return;
      }
      const input = decode(JSON.parse(body || '{}') as Record<string, unknown>);
      requests.push({ operation, input });
      const delay = options.delayMs?.() ?? 0;
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      const failure = failures.get(operation);
      try {
        if (failure) throw Object.assign(new Error(failure.message), { name: failure.name });
        send(200, encode((run as (i: unknown) => Record<string, unknown>)(input)));
      } catch (err) {
        const name = (err as Error).name;
        send(400, { __type: name, message: (err as Error).message }, { 'x-amzn-errortype': name });
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    failWith: (operation, name, message = 'failed') => failures.set(operation, { name, message }),
    clearFailures: () => failures.clear(),
    serveJson: (path, payload) => json.set(path, payload),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
