import { inject } from 'vitest';
import { verifyTable } from '../../lib/audit/verify-sources.js';
import { localDynamoClient } from '../../lib/store/dynamo-client.js';
import { auditFixture } from './audit-fixtures.js';
import { startFaultProxy } from './fault-proxy.js';
import { createHarness } from './harness.js';

/**
 * The app with a signed DynamoDB audit trail, whose store and trail reach the run's DynamoDB Local
 * through a fault proxy, with short SDK timeouts so that a black hole costs seconds, not minutes.
 */
export async function faultyHarness(label: string) {
  const proxy = await startFaultProxy(inject('dynamodbEndpoint'));
  const proxied = localDynamoClient(proxy.url, {
    connectionTimeoutMs: 500,
    requestTimeoutMs: 1_500,
    maxAttempts: 2,
  });
  const fx = await auditFixture(label);
  const h = await createHarness({
    label,
    audit: fx.trail({ client: proxied, chains: 2 }),
    clientWrapper: () => proxied,
  });
  const call = async (method: string, route: string, body?: unknown) => {
    const res = await h.call(method, route, body !== undefined ? { body } : {});
    return { status: res.status, body: res.body as unknown };
  };
  return {
    proxy,
    h,
    fx,
    call,
    /** Seals the chains with a checkpoint (no faults) and verifies the whole audit table. */
    async verifyAudit() {
      await fx.checkpointer.write();
      return verifyTable(fx.reader, { rootKeys: [fx.rootPem] });
    },
    async close() {
      proxied.destroy();
      await proxy.close();
    },
  };
}
