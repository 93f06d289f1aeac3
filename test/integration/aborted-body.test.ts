import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RequestRecord } from '../../lib/audit/record.js';
import { auditFixture } from '../support/audit-fixtures.js';
import { scanAll } from '../support/dynamo.js';
import { createHarness, type Harness } from '../support/harness.js';

/*
 * A client that hangs up in the middle of its body is the client's doing: the server logs no
 * error (no stack), and the request's audit record says 499 client_closed_request, not 500.
 */
let fx: Awaited<ReturnType<typeof auditFixture>>;
let h: Harness;
let server: ServerType;
let port: number;

beforeAll(async () => {
  fx = await auditFixture('aborted');
  h = await createHarness({ label: 'aborted-app', audit: fx.trail() });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});

afterAll(() => new Promise((resolve) => server.close(resolve)));

/** Sends the headers and half of a declared body, then destroys the socket. */
async function sendHalfAndHangUp(method: string, route: string): Promise<void> {
  const body = JSON.stringify({ value: 'x'.repeat(200) });
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(
    `${method} ${route} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${h.token}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 100)}`,
  );
  await new Promise((resolve) => setTimeout(resolve, 150));
  socket.destroy();
}

describe('a request body cut short by the client', () => {
  it('when the client disconnects mid-body, nothing is logged as an error and the audit says 499', async () => {
    await sendHalfAndHangUp('PUT', '/v1/secrets/abort/put');
    await sendHalfAndHangUp('PATCH', '/v1/meta/abort/put');
    // The records are written once the app gives up on the body.
    let records: RequestRecord[] = [];
    for (let i = 0; i < 100 && records.length < 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      records = ((await scanAll(fx.client, fx.tables.audit)) as unknown as RequestRecord[]).filter(
        (r) => r.type === 'request',
      );
    }
    expect(records).toHaveLength(2);
    for (const r of records) {
      expect(r.status).toBe(499);
      expect(r.error).toBe('client_closed_request');
    }
    expect(h.logs.filter((l) => JSON.parse(l).level === 'error')).toEqual([]);
    expect(h.logs.join('\n')).not.toContain('stack');
    // The server still serves.
    const res = await fetch(`http://127.0.0.1:${port}/v1/health`);
    expect(res.status).toBe(200);
    expect(await h.store.getHead('abort/put')).toBeUndefined();
  });
});

describe('a GET that carries a body', () => {
  it('is answered as a read, whatever the body says: the body is not read, not even past the limit', async () => {
    expect((await h.call('PUT', '/v1/secrets/abort/get-body', { body: { value: 'kept' } })).status).toBe(200);
    const body = 'y'.repeat(200 * 1024);
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.write(
      `GET /v1/secrets/abort/get-body HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${h.token}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    await once(socket, 'close');
    const answer = Buffer.concat(chunks).toString();
    expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({
      value: 'kept',
      version: 1,
    });
  });
});
