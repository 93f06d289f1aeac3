import { describe, expect, it } from 'vitest';
import { scanAll } from '../support/dynamo.js';
import { createHarness } from '../support/harness.js';

/** Every string form a stored attribute could take: text, and binary as UTF-8, base64 and hex. */
function renderings(value: unknown): string[] {
  if (value instanceof Uint8Array) {
    const b = Buffer.from(value);
    return [b.toString('utf8'), b.toString('base64'), b.toString('hex'), b.toString('latin1')];
  }
  if (value && typeof value === 'object') return Object.values(value).flatMap(renderings);
  return [String(value)];
}

describe('no plaintext at rest or in logs', () => {
  it('when a canary value is written, read, versioned and deleted, it appears in no stored item and no log line', async () => {
    const h = await createHarness({ label: 'canary' });
    const canary = `CANARY-${crypto.randomUUID()}`;
    await h.call('PUT', '/v1/secrets/canary/a', {
      body: { value: canary, description: 'plain description', tags: { env: 'test' } },
      headers: { 'idempotency-key': 'canary-key' },
    });
    await h.call('PUT', '/v1/secrets/canary/a', { body: { value: `${canary}-v2` } });
    await h.call('PUT', '/v1/secrets/canary/b', { body: { value: canary } });
    expect((await h.call('GET', '/v1/secrets/canary/a?version=1')).body.value).toBe(canary);
    // Failures are logged too; make some.
    await h.call('PUT', '/v1/secrets/canary/a', { body: { value: canary, cas: 0 } });
    await h.call('PUT', '/v1/secrets/canary/a', {
      body: { value: `${canary}-other` },
      headers: { 'idempotency-key': 'canary-key' },
    });
    await h.call('PUT', '/v1/secrets/canary/big', { body: { value: `${canary}${'x'.repeat(70_000)}` } });
    await h.call('DELETE', '/v1/secrets/canary/b');

    const items = await scanAll(h.client, h.tables.secrets);
    expect(items.length).toBeGreaterThan(4);
    const stored = items.flatMap((i) => renderings(i)).join('\n');
    expect(stored).toContain('canary/a');
    expect(stored).not.toContain(canary);
    expect(stored).not.toContain(Buffer.from(canary).toString('base64'));
    expect(stored).not.toContain(Buffer.from(canary).toString('hex'));
    expect(h.logs.join('\n')).not.toContain(canary);
  });
});
