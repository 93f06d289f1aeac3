import { beforeAll, describe, expect, it } from 'vitest';
import { localDynamoClient } from '../../lib/store/dynamo-client.js';
import { createHarness, type Harness } from '../support/harness.js';

/** `.invalid` is reserved (RFC 2606): this name never resolves, so every call fails in DNS. */
const UNRESOLVABLE = 'http://coffer-nonexistent.invalid:8000';

let h: Harness;

beforeAll(async () => {
  h = await createHarness({ label: 'dns', clientWrapper: () => localDynamoClient(UNRESOLVABLE) });
});

describe('a store whose host name does not resolve', () => {
  it('when DynamoDB cannot be found in DNS, reads and writes answer 503 storage_unavailable, not 500', async () => {
    for (const [method, route, body] of [
      ['GET', '/v1/secrets/dns/a', undefined],
      ['PUT', '/v1/secrets/dns/a', { value: 'v' }],
      ['GET', '/v1/list?prefix=dns/', undefined],
    ] as const) {
      const res = await h.call(method, route, body !== undefined ? { body } : {});
      expect(res.status, `${method} ${route}`).toBe(503);
      expect(res.body.error).toMatchObject({ code: 'storage_unavailable', message: 'storage unavailable' });
      expect(res.text).not.toContain('coffer-nonexistent');
    }
  });

  it('when DynamoDB cannot be found, readiness answers 503 storage_unavailable while health still answers ok', async () => {
    const ready = await h.call('GET', '/v1/ready');
    expect(ready.status).toBe(503);
    expect(ready.body.error).toMatchObject({ code: 'storage_unavailable' });
    const health = await h.call('GET', '/v1/health', { token: null });
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: 'ok' });
  });
});
