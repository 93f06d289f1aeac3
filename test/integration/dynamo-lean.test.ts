import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { Sha256 } from '@aws-crypto/sha256-js';
import {
  BatchGetItemCommand,
  ConditionalCheckFailedException,
  DynamoDBClient,
  DynamoDBServiceException,
  GetItemCommand,
  ProvisionedThroughputExceededException,
  PutItemCommand,
  QueryCommand,
  ResourceNotFoundException,
} from '@aws-sdk/client-dynamodb';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ThrottledError } from '../../lib/errors.js';
import { observeStorageCalls } from '../../lib/store/call-counter.js';
import { LOCAL_DYNAMODB_CREDENTIALS, LOCAL_DYNAMODB_REGION } from '../../lib/store/dynamo-client.js';
import { DynamoSigner, useLeanTransport } from '../../lib/store/dynamo-lean.js';
import { mapStorageError, StorageUnavailableError } from '../../lib/store/storage-errors.js';
import type { TableNames } from '../../lib/store/tables.js';
import { classifyFailure } from '../../packages/client/src/failures.js';
import { freshTables } from '../support/dynamo.js';

/*
 * The read path's lean DynamoDB transport (lib/store/dynamo-lean.ts) must be indistinguishable
 * from the SDK to the code above it: the same output shapes from DynamoDB Local, the SDK's own
 * exception classes, the same retry and failure classification, and a SigV4 signature that the
 * SDK's own signer agrees with (DynamoDB Local does not check signatures; AWS does).
 */

const TIMEOUTS = { connectionTimeoutMs: 500, requestTimeoutMs: 800 };
let lean: DynamoDBClient;
let sdk: DynamoDBClient;
let tables: TableNames;

beforeAll(async () => {
  ({ client: lean, tables } = await freshTables('lean'));
  sdk = new DynamoDBClient({
    endpoint: inject('dynamodbEndpoint'),
    region: LOCAL_DYNAMODB_REGION,
    credentials: LOCAL_DYNAMODB_CREDENTIALS,
  });
});

afterAll(() => {
  lean.destroy();
  sdk.destroy();
});

/** An item with every attribute type, an attribute named `B` and binary data inside lists and maps. */
const ITEM = {
  pk: { S: 'lean#item' },
  sk: { S: 'V#0000000001' },
  bin: { B: new Uint8Array([0, 1, 2, 250, 255]) },
  bins: { BS: [new Uint8Array([1]), new Uint8Array([2, 3])] },
  num: { N: '12.5' },
  nums: { NS: ['1', '2'] },
  strs: { SS: ['a', 'b'] },
  flag: { BOOL: true },
  none: { NULL: true },
  B: { S: 'an attribute named B' },
  list: { L: [{ B: new Uint8Array([9, 9]) }, { S: 'x' }, { M: { B: { B: new Uint8Array([7]) } } }] },
};

describe('the lean transport against DynamoDB Local', () => {
  it('writes and reads every attribute type exactly as the SDK does', async () => {
    const calls: string[] = [];
    const stop = observeStorageCalls(lean, (op) => calls.push(op));
    await lean.send(new PutItemCommand({ TableName: tables.secrets, Item: ITEM }));
    const key = { pk: ITEM.pk, sk: ITEM.sk };
    const viaLean = await lean.send(
      new GetItemCommand({ TableName: tables.secrets, Key: key, ConsistentRead: true }),
    );
    const viaSdk = await sdk.send(
      new GetItemCommand({ TableName: tables.secrets, Key: key, ConsistentRead: true }),
    );
    expect(viaLean.Item).toEqual(viaSdk.Item);
    expect(viaLean.Item).toEqual(ITEM);
    expect(viaLean.Item?.bin?.B).toBeInstanceOf(Uint8Array);
    expect(viaLean.$metadata.httpStatusCode).toBe(200);

    const missing = { pk: { S: 'lean#absent' }, sk: { S: 'V#0000000001' } };
    const none = await lean.send(
      new GetItemCommand({ TableName: tables.secrets, Key: missing, ConsistentRead: true }),
    );
    expect(none.Item).toBeUndefined();

    const batch = { RequestItems: { [tables.secrets]: { Keys: [key, missing], ConsistentRead: true } } };
    const leanBatch = await lean.send(new BatchGetItemCommand(batch));
    const sdkBatch = await sdk.send(new BatchGetItemCommand(batch));
    expect(leanBatch.Responses).toEqual(sdkBatch.Responses);
    expect(leanBatch.Responses?.[tables.secrets]).toEqual([ITEM]);
    expect(leanBatch.UnprocessedKeys).toEqual(sdkBatch.UnprocessedKeys);

    // Everything else still goes through the SDK, and the observer sees both ways.
    await lean.send(
      new QueryCommand({
        TableName: tables.secrets,
        KeyConditionExpression: 'pk = :p',
        ExpressionAttributeValues: { ':p': ITEM.pk },
      }),
    );
    stop();
    expect(calls).toEqual(['PutItem', 'GetItem', 'GetItem', 'BatchGetItem', 'Query']);
  });

  it("fails a condition with the SDK's ConditionalCheckFailedException, and a missing table with ResourceNotFoundException", async () => {
    const put = new PutItemCommand({
      TableName: tables.secrets,
      Item: { pk: { S: 'lean#cond' }, sk: { S: 'x' } },
      ConditionExpression: 'attribute_not_exists(pk)',
    });
    await lean.send(put);
    const again = await lean.send(put).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(ConditionalCheckFailedException);
    expect(again).toMatchObject({
      name: 'ConditionalCheckFailedException',
      $metadata: { httpStatusCode: 400 },
    });
    expect(classifyFailure(again)).toBe('other');

    const gone = await lean
      .send(new GetItemCommand({ TableName: 'lean-no-such-table', Key: { pk: { S: 'a' }, sk: { S: 'b' } } }))
      .catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(ResourceNotFoundException);
  });
});

/** A stand-in DynamoDB endpoint that answers every request with `answer` and records what came. */
async function endpointAnswering(answer: (n: number) => { status: number; body: string }) {
  const seen: { headers: IncomingHttpHeaders; body: string }[] = [];
  const server: Server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ headers: req.headers, body: Buffer.concat(chunks).toString() });
      const { status, body } = answer(seen.length);
      res.writeHead(status, {
        'content-type': 'application/x-amz-json-1.0',
        'x-amzn-requestid': `r${seen.length}`,
      });
      res.end(body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen, server };
}

function clientFor(url: string, extra: Partial<ConstructorParameters<typeof DynamoDBClient>[0]> = {}) {
  return useLeanTransport(
    new DynamoDBClient({
      endpoint: url,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret', sessionToken: 'token-1' },
      maxAttempts: 3,
      ...extra,
    }),
    TIMEOUTS,
  );
}

const GET = () => new GetItemCommand({ TableName: 't', Key: { pk: { S: 'a' }, sk: { S: 'b' } } });

describe('the lean transport under failures', () => {
  it('retries a 500 up to maxAttempts, then fails as the service being unavailable', async () => {
    const ep = await endpointAnswering(() => ({
      status: 500,
      body: '{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"boom"}',
    }));
    const client = clientFor(ep.url);
    const err = await client.send(GET()).catch((e: unknown) => e);
    expect(ep.seen).toHaveLength(3);
    expect(err).toMatchObject({
      name: 'InternalServerError',
      $metadata: { httpStatusCode: 500, requestId: 'r3' },
    });
    expect(mapStorageError(err)).toBeInstanceOf(StorageUnavailableError);
    client.destroy();
    ep.server.close();
  });

  it('retries throttling and succeeds when DynamoDB recovers; a throttle to the end is a ThrottledError', async () => {
    const throttle =
      '{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}';
    const ep = await endpointAnswering((n) =>
      n === 1
        ? { status: 400, body: throttle }
        : { status: 200, body: '{"Item":{"pk":{"S":"a"},"v":{"B":"AAE="}}}' },
    );
    const client = clientFor(ep.url);
    const out = await client.send(GET());
    expect(out.Item?.v?.B).toEqual(new Uint8Array([0, 1]));
    expect(out.$metadata.attempts).toBe(2);
    client.destroy();
    ep.server.close();

    const always = await endpointAnswering(() => ({ status: 400, body: throttle }));
    const throttled = clientFor(always.url);
    const err = await throttled.send(GET()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProvisionedThroughputExceededException);
    expect(always.seen).toHaveLength(3);
    expect(mapStorageError(err)).toBeInstanceOf(ThrottledError);
    throttled.destroy();
    always.server.close();
  });

  it('names an unknown error type by its type, does not retry a client error, and survives a non-JSON page', async () => {
    const ep = await endpointAnswering((n) =>
      n === 1
        ? {
            status: 400,
            body: '{"__type":"com.amazon.coral.validate#ValidationException","message":"bad key"}',
          }
        : { status: 503, body: '<html>proxy</html>' },
    );
    const client = clientFor(ep.url, { maxAttempts: 1 });
    const invalid = await client.send(GET()).catch((e: unknown) => e);
    expect(invalid).toBeInstanceOf(DynamoDBServiceException);
    expect(invalid).toMatchObject({ name: 'ValidationException', message: 'bad key', $fault: 'client' });
    expect(classifyFailure(invalid)).toBe('other');
    expect(ep.seen).toHaveLength(1);
    const page = await client.send(GET()).catch((e: unknown) => e);
    expect(page).toMatchObject({ $metadata: { httpStatusCode: 503 } });
    expect(classifyFailure(page)).toBe('unavailable');
    client.destroy();
    ep.server.close();
  });

  it('fails a refused connection and an endpoint that never answers as unavailable, within its timeouts', async () => {
    const closed = createTcpServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    await once(closed, 'close');
    const refused = clientFor(`http://127.0.0.1:${port}`);
    const err = await refused.send(GET()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ECONNREFUSED' });
    expect(mapStorageError(err)).toBeInstanceOf(StorageUnavailableError);
    refused.destroy();

    // Accepts the connection, reads the request, never answers.
    const sockets: Socket[] = [];
    const silent = createTcpServer((s) => {
      sockets.push(s);
      s.resume();
    });
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const hanging = clientFor(`http://127.0.0.1:${(silent.address() as AddressInfo).port}`, {
      maxAttempts: 2,
    });
    const began = Date.now();
    const timedOut = await hanging.send(GET()).catch((e: unknown) => e);
    const took = Date.now() - began;
    expect(timedOut).toMatchObject({ name: 'TimeoutError' });
    expect(mapStorageError(timedOut)).toBeInstanceOf(StorageUnavailableError);
    expect(sockets.length).toBe(2);
    // Two attempts of at most connect + request time each, plus one backoff of at most 100 ms.
    expect(took).toBeLessThan(2 * (TIMEOUTS.connectionTimeoutMs + TIMEOUTS.requestTimeoutMs) + 1_000);
    hanging.destroy();
    for (const s of sockets) s.destroy();
    silent.close();
  });

  it('sends the session token and signs every request; each attempt is observed', async () => {
    const ep = await endpointAnswering(() => ({ status: 200, body: '{}' }));
    const client = clientFor(ep.url);
    const ops: string[] = [];
    observeStorageCalls(client, (op, input) =>
      ops.push(`${op}:${(input as { TableName: string }).TableName}`),
    );
    await client.send(
      new PutItemCommand({ TableName: 'audit', Item: { pk: { S: 'p' }, b: { B: new Uint8Array([1, 2]) } } }),
    );
    const [first] = ep.seen;
    expect(first?.headers['x-amz-target']).toBe('DynamoDB_20120810.PutItem');
    expect(first?.headers['x-amz-security-token']).toBe('token-1');
    expect(first?.headers.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/\d{8}\/eu-west-1\/dynamodb\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=[0-9a-f]{64}$/,
    );
    expect(JSON.parse(first?.body ?? '')).toEqual({
      TableName: 'audit',
      Item: { pk: { S: 'p' }, b: { B: 'AQI=' } },
    });
    expect(ops).toEqual(['PutItem:audit']);
    client.destroy();
    ep.server.close();
  });

  it('sends to the endpoint configured for DynamoDB in the environment, as the SDK would', async () => {
    const ep = await endpointAnswering(() => ({ status: 200, body: '{}' }));
    const saved = process.env.AWS_ENDPOINT_URL_DYNAMODB;
    process.env.AWS_ENDPOINT_URL_DYNAMODB = ep.url;
    try {
      const client = useLeanTransport(
        new DynamoDBClient({
          region: 'eu-west-1',
          credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
        }),
        TIMEOUTS,
      );
      await client.send(GET());
      expect(ep.seen).toHaveLength(1);
      expect(ep.seen[0]?.headers['user-agent'] ?? '').not.toContain('aws-sdk-js');
      expect(ep.seen[0]?.headers.authorization).toContain('/eu-west-1/dynamodb/aws4_request');
      client.destroy();
    } finally {
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL_DYNAMODB;
      else process.env.AWS_ENDPOINT_URL_DYNAMODB = saved;
      ep.server.close();
    }
  });

  it('leaves a FIPS client on the SDK', async () => {
    const ep = await endpointAnswering(() => ({ status: 200, body: '{}' }));
    const client = clientFor(ep.url, { useFipsEndpoint: true });
    const ops: string[] = [];
    observeStorageCalls(client, (op) => ops.push(op));
    // The SDK itself refuses a custom endpoint with FIPS; what matters is that the lean path did
    // not send anything.
    await client.send(GET()).catch(() => undefined);
    expect(ep.seen.every((r) => r.headers['user-agent']?.includes('aws-sdk-js'))).toBe(true);
    client.destroy();
    ep.server.close();
  });
});

describe('the lean SigV4 signer', () => {
  it.each([
    ['with a session token', 'token-xyz'],
    ['without one', undefined],
  ])('signs exactly as the SDK signer does, %s', async (_label, sessionToken) => {
    const now = new Date('2026-11-30T12:34:56.000Z');
    const body = '{"TableName":"t","Key":{"pk":{"S":"a"}}}';
    const identity = {
      accessKeyId: 'AKIDEXAMPLE',
      secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
      ...(sessionToken ? { sessionToken } : {}),
    };
    const ours = new DynamoSigner('eu-west-1').sign(
      'dynamodb.eu-west-1.amazonaws.com',
      'DynamoDB_20120810.GetItem',
      body,
      identity,
      now,
    );
    const reference = await new SignatureV4({
      service: 'dynamodb',
      region: 'eu-west-1',
      credentials: identity,
      sha256: Sha256,
    }).sign(
      new HttpRequest({
        method: 'POST',
        protocol: 'https:',
        hostname: 'dynamodb.eu-west-1.amazonaws.com',
        path: '/',
        headers: {
          host: 'dynamodb.eu-west-1.amazonaws.com',
          'content-type': 'application/x-amz-json-1.0',
          'x-amz-target': 'DynamoDB_20120810.GetItem',
        },
        body,
      }),
      { signingDate: now, unsignableHeaders: new Set(['x-amz-content-sha256']) },
    );
    const signed = reference.headers as Record<string, string>;
    expect(ours['x-amz-date']).toBe(signed['x-amz-date']);
    expect(ours['x-amz-security-token']).toBe(signed['x-amz-security-token']);
    expect(ours.authorization).toBe(signed.authorization);
  });
});
