import { createHmac, hash } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import {
  BatchGetItemCommand,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  DynamoDBServiceException,
  GetItemCommand,
  InternalServerError,
  ProvisionedThroughputExceededException,
  PutItemCommand,
  RequestLimitExceeded,
  ResourceNotFoundException,
  ThrottlingException,
} from '@aws-sdk/client-dynamodb';
import { isRetryableFailure } from '../../packages/client/src/failures.js';
import { retry } from '../../packages/client/src/retry.js';

/*
 * A lean transport for the three calls every read makes: GetItem, BatchGetItem and PutItem (the
 * audit record). Through the AWS SDK each call costs far more CPU than the request itself: a
 * dozen middleware steps, schema-driven serialization, endpoint rules, a generic SigV4 signer.
 * On a 2-core machine that was most of the server's CPU per GET (docs/benchmarks.md, "HTTP against
 * the storage floor"). This path sends the same JSON protocol (`x-amz-json-1.0`) with a SigV4
 * signature of its own (key derived once a day), over a keep-alive agent, and gives back what
 * the SDK gives back: the same output shape (binary attributes as Uint8Array) and the SDK's own
 * exception classes, so the store, its error mapping and `instanceof` checks are unchanged. Every
 * other operation, and a client whose configuration this path does not cover (FIPS or dual-stack
 * endpoints), still goes through the SDK.
 */

/** Waits of one attempt, as the SDK's request handler would be given them. */
export interface LeanTimeouts {
  readonly connectionTimeoutMs: number;
  readonly requestTimeoutMs: number;
}

/** One attempt on the wire: its operation and input, for counters and recorders. */
export type StorageCallListener = (operation: string, input: unknown) => void;

const listeners = new WeakMap<DynamoDBClient, Set<StorageCallListener>>();
/** Marks a client whose `send` was wrapped, so that wrapping twice is a no-op. */
const LEAN = Symbol('coffer.leanTransport');

/**
 * Tells `listener` of every attempt the lean transport sends for `client` (the SDK's own calls
 * are seen through its middleware: lib/store/call-counter.ts does both). Returns the unsubscribe.
 */
export function onLeanCall(client: DynamoDBClient, listener: StorageCallListener): () => void {
  let set = listeners.get(client);
  if (!set) {
    set = new Set();
    listeners.set(client, set);
  }
  set.add(listener);
  return () => set.delete(listener);
}

const OPERATIONS = [
  [GetItemCommand, 'GetItem'],
  [BatchGetItemCommand, 'BatchGetItem'],
  [PutItemCommand, 'PutItem'],
] as const;

function operationOf(command: unknown): string | undefined {
  for (const [type, name] of OPERATIONS) if (command instanceof type) return name;
  return undefined;
}

/** The SDK's classes for the errors the store tells apart; others become DynamoDBServiceException. */
const EXCEPTIONS: Record<string, new (opts: never) => DynamoDBServiceException> = {
  ConditionalCheckFailedException: ConditionalCheckFailedException as never,
  ProvisionedThroughputExceededException: ProvisionedThroughputExceededException as never,
  RequestLimitExceeded: RequestLimitExceeded as never,
  ThrottlingException: ThrottlingException as never,
  InternalServerError: InternalServerError as never,
  ResourceNotFoundException: ResourceNotFoundException as never,
};

/**
 * JSON with binary attributes as base64, as the protocol sends them. The bytes are swapped for
 * their base64 in a copy of the input first (only the objects on the way to them are copied), so
 * that JSON.stringify runs without a replacer, which would call back into JavaScript for every
 * value of every call.
 */
function serialize(input: unknown): string {
  return JSON.stringify(withBase64(input));
}

function withBase64(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Uint8Array)
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      const w = withBase64(v);
      if (w !== v) {
        copy ??= value.slice();
        copy[i] = w;
      }
    }
    return copy ?? value;
  }
  const record = value as Record<string, unknown>;
  let copy: Record<string, unknown> | undefined;
  for (const key of Object.keys(record)) {
    const v = record[key];
    const w = withBase64(v);
    if (w !== v) {
      copy ??= { ...record };
      copy[key] = w;
    }
  }
  return copy ?? value;
}

function bytesOf(base64: string): Uint8Array {
  const b = Buffer.from(base64, 'base64');
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * The protocol's JSON with `B` and `BS` values as Uint8Array, as the SDK returns them. An attribute
 * that is itself named `B` holds an object (its AttributeValue), never a string, so only values
 * are converted. A walk after a plain parse, not a reviver: a reviver is a call back into
 * JavaScript for every value of the answer, and this runs on every read.
 */
function deserialize(text: string): Record<string, unknown> {
  if (text === '') return {};
  const parsed = JSON.parse(text) as Record<string, unknown>;
  binaryIn(parsed);
  return parsed;
}

function binaryIn(node: unknown): void {
  if (node === null || typeof node !== 'object') return;
  if (Array.isArray(node)) {
    for (const item of node) binaryIn(item);
    return;
  }
  const record = node as Record<string, unknown>;
  for (const key in record) {
    const value = record[key];
    if (key === 'B' && typeof value === 'string') record[key] = bytesOf(value);
    else if (key === 'BS' && Array.isArray(value)) {
      const set: unknown[] = value;
      for (let i = 0; i < set.length; i++) {
        const member = set[i];
        if (typeof member === 'string') set[i] = bytesOf(member);
      }
    } else binaryIn(value);
  }
}

interface Identity {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

// One-shot hashing: no Hash object per call.
const sha256Hex = (data: string) => hash('sha256', data, 'hex');
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();

/**
 * SigV4 for a DynamoDB JSON call (POST /, no query). The signing key depends only on the secret,
 * the day, the region and the service, so it is derived once a day rather than per request.
 */
export class DynamoSigner {
  #cached: { readonly secret: string; readonly day: string; readonly key: Buffer } | undefined;
  readonly #region: string;

  constructor(region: string) {
    this.#region = region;
  }

  /** The headers to send (content-type, x-amz-date, x-amz-target, token, authorization). */
  sign(
    host: string,
    target: string,
    body: string,
    identity: Identity,
    now: Date = new Date(),
  ): Record<string, string> {
    const amzDate = now.toISOString().replace(/[-:]|\.\d{3}/g, '');
    const day = amzDate.slice(0, 8);
    const scope = `${day}/${this.#region}/dynamodb/aws4_request`;
    // Signed headers in name order, written out rather than mapped: this runs on every call.
    const token = identity.sessionToken;
    const signedHeaders = token
      ? 'content-type;host;x-amz-date;x-amz-security-token;x-amz-target'
      : 'content-type;host;x-amz-date;x-amz-target';
    const canonical =
      'POST\n/\n\n' +
      'content-type:application/x-amz-json-1.0\n' +
      `host:${host.trim()}\n` +
      `x-amz-date:${amzDate}\n` +
      (token ? `x-amz-security-token:${token.trim()}\n` : '') +
      `x-amz-target:${target.trim()}\n\n` +
      `${signedHeaders}\n${sha256Hex(body)}`;
    const stringToSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${sha256Hex(canonical)}`;
    const signature = createHmac('sha256', this.#key(identity.secretAccessKey, day))
      .update(stringToSign)
      .digest('hex');
    const out: Record<string, string> = {
      'content-type': 'application/x-amz-json-1.0',
      'x-amz-date': amzDate,
      'x-amz-target': target,
      authorization: `AWS4-HMAC-SHA256 Credential=${identity.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
    };
    if (token) out['x-amz-security-token'] = token;
    return out;
  }

  #key(secret: string, day: string): Buffer {
    const cached = this.#cached;
    if (cached?.secret === secret && cached.day === day) return cached.key;
    const kDate = hmac(`AWS4${secret}`, day);
    const kRegion = hmac(kDate, this.#region);
    const kService = hmac(kRegion, 'dynamodb');
    const key = hmac(kService, 'aws4_request');
    this.#cached = { secret, day, key };
    return key;
  }
}

/** What one attempt failed with, shaped as the SDK's errors are (classifyFailure reads them). */
function serviceError(status: number, text: string, requestId: string | undefined): Error {
  let body: Record<string, unknown> = {};
  try {
    body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    // A proxy's HTML page: the status says what it is.
  }
  const type = typeof body.__type === 'string' ? (body.__type.split('#').pop() ?? '') : '';
  const name = type || (status >= 500 ? 'InternalServerError' : 'UnknownError');
  const message = String(body.message ?? body.Message ?? name);
  const $metadata = { httpStatusCode: status, ...(requestId ? { requestId } : {}), attempts: 1 };
  const fault = status >= 500 ? 'server' : 'client';
  const Known = EXCEPTIONS[name];
  const { __type: _t, message: _m, Message: _M, ...rest } = body;
  if (Known) return Object.assign(new Known({ message, $metadata } as never), rest);
  return Object.assign(new DynamoDBServiceException({ name, $fault: fault, message, $metadata }), rest);
}

function timeoutError(message: string): Error {
  return Object.assign(new Error(message), { name: 'TimeoutError', code: 'ETIMEDOUT' });
}

interface LeanConfig {
  readonly endpoint: URL;
  readonly signer: DynamoSigner;
  readonly credentials: () => Promise<Identity>;
  readonly maxAttempts: number;
}

/**
 * Sends the three read-path operations of `client` through the lean transport from now on; all
 * others keep the SDK. Idempotent. The client's region, endpoint, credentials and `maxAttempts`
 * are taken from its own configuration on first use; a client configured for FIPS or dual-stack
 * endpoints, or a partition this path does not know, keeps the SDK for everything.
 */
export function useLeanTransport(client: DynamoDBClient, timeouts: LeanTimeouts): DynamoDBClient {
  const marked = client as DynamoDBClient & { [LEAN]?: true };
  if (marked[LEAN]) return client;
  marked[LEAN] = true;
  const sdkSend = client.send.bind(client) as (command: unknown, ...rest: unknown[]) => Promise<unknown>;
  const sdkDestroy = client.destroy.bind(client);
  let config: Promise<LeanConfig | undefined> | undefined;
  const agents = {
    http: new HttpAgent({ keepAlive: true, maxSockets: 50 }),
    https: new HttpsAgent({ keepAlive: true, maxSockets: 50 }),
  };

  const resolve = async (): Promise<LeanConfig | undefined> => {
    const c = client.config as typeof client.config & {
      readonly ignoreConfiguredEndpointUrls?: boolean;
      readonly serviceConfiguredEndpoint?: () => Promise<string | undefined>;
    };
    const [region, fips, dualstack, maxAttempts] = await Promise.all([
      c.region(),
      c.useFipsEndpoint(),
      c.useDualstackEndpoint(),
      c.maxAttempts(),
    ]);
    if (fips || dualstack) return undefined;
    // Where the SDK would send the call: the endpoint given to the client, else one configured
    // for DynamoDB in the environment or the shared config (AWS_ENDPOINT_URL_DYNAMODB,
    // AWS_ENDPOINT_URL), else the region's own, from the SDK's endpoint rules.
    const given = c.endpoint ? await c.endpoint() : undefined;
    const configured =
      given === undefined && !c.ignoreConfiguredEndpointUrls
        ? await c.serviceConfiguredEndpoint?.()
        : undefined;
    const endpoint = given
      ? new URL(
          `${given.protocol}//${given.hostname}${given.port ? `:${given.port}` : ''}${given.path ?? '/'}`,
        )
      : configured
        ? new URL(configured)
        : new URL(c.endpointProvider({ Region: region, UseFIPS: false, UseDualStack: false }).url.href);
    if (endpoint.pathname !== '/' || endpoint.search !== '') return undefined;
    return {
      endpoint,
      signer: new DynamoSigner(region),
      credentials: () => c.credentials() as Promise<Identity>,
      maxAttempts: Math.max(1, maxAttempts),
    };
  };

  const attempt = (lean: LeanConfig, operation: string, body: string, identity: Identity) =>
    new Promise<Record<string, unknown>>((done, fail) => {
      const { endpoint } = lean;
      const headers = lean.signer.sign(endpoint.host, `DynamoDB_20120810.${operation}`, body, identity);
      headers['content-length'] = String(Buffer.byteLength(body));
      const https = endpoint.protocol === 'https:';
      const req = (https ? httpsRequest : httpRequest)(
        {
          protocol: endpoint.protocol,
          hostname: endpoint.hostname,
          port: endpoint.port || (https ? 443 : 80),
          method: 'POST',
          path: '/',
          headers,
          agent: https ? agents.https : agents.http,
        },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', fail);
          res.on('end', () => {
            clearTimeout(overall);
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            const requestId = res.headers['x-amzn-requestid'];
            if (status !== 200) {
              fail(serviceError(status, text, typeof requestId === 'string' ? requestId : undefined));
              return;
            }
            try {
              done(deserialize(text));
            } catch {
              fail(serviceError(502, '', undefined));
            }
          });
        },
      );
      // A connection that is never made, or an answer that never comes, fails the attempt.
      const overall = setTimeout(() => {
        req.destroy(timeoutError(`DynamoDB did not answer within ${timeouts.requestTimeoutMs} ms`));
      }, timeouts.connectionTimeoutMs + timeouts.requestTimeoutMs);
      req.setTimeout(timeouts.requestTimeoutMs, () => {
        req.destroy(timeoutError(`DynamoDB did not answer within ${timeouts.requestTimeoutMs} ms`));
      });
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        const connect = setTimeout(() => {
          req.destroy(timeoutError(`no connection to DynamoDB within ${timeouts.connectionTimeoutMs} ms`));
        }, timeouts.connectionTimeoutMs);
        socket.once('connect', () => clearTimeout(connect));
        socket.once('close', () => clearTimeout(connect));
      });
      req.on('error', (err) => {
        clearTimeout(overall);
        fail(err);
      });
      req.end(body);
    });

  const leanSend = async (lean: LeanConfig, operation: string, input: unknown) => {
    const body = serialize(input);
    let attempts = 0;
    const output = await retry(
      async () => {
        attempts++;
        const identity = await lean.credentials();
        for (const listener of listeners.get(client) ?? []) listener(operation, input);
        return attempt(lean, operation, body, identity);
      },
      { attempts: lean.maxAttempts, baseDelayMs: 50, maxDelayMs: 2_000, isRetryable: isRetryableFailure },
    );
    return { ...output, $metadata: { httpStatusCode: 200, attempts } };
  };

  (client as { send: unknown }).send = (command: unknown, ...rest: unknown[]) => {
    const operation = operationOf(command);
    // Callbacks and abort signals are the SDK's business.
    if (operation === undefined || rest.length > 0) return sdkSend(command, ...rest);
    // A failed resolution (no region configured) is not kept: the next call tries again.
    config ??= resolve().catch((err: unknown) => {
      config = undefined;
      throw err;
    });
    return config.then((lean) =>
      lean ? leanSend(lean, operation, (command as { input: unknown }).input) : sdkSend(command),
    );
  };
  (client as { destroy: () => void }).destroy = () => {
    agents.http.destroy();
    agents.https.destroy();
    sdkDestroy();
  };
  return client;
}
