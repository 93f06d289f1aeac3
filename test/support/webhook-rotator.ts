import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RotatorCall } from '../../packages/client/src/contract.js';

/** What the test rotator does with a call: answer with this status, after `delayMs`. */
export interface RotatorReply {
  readonly status: number;
  readonly delayMs?: number;
}

/**
 * A webhook rotator on loopback for tests: records every call's body and answers as `behave`
 * says (it may read the pending value with the call's grant first, as a real rotator would).
 */
export class TestRotator {
  readonly calls: RotatorCall[] = [];
  behave: (call: RotatorCall) => Promise<RotatorReply> | RotatorReply = () => ({ status: 200 });
  private server: Server | undefined;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const call = JSON.parse(Buffer.concat(chunks).toString('utf8')) as RotatorCall;
        this.calls.push(call);
        void (async () => {
          const reply = await this.behave(call);
          if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
          if (!res.destroyed) res.writeHead(reply.status, { 'content-type': 'text/plain' }).end('done');
        })();
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/rotate`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
