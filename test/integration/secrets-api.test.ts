import { beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';

let h: Harness;
beforeAll(async () => {
  h = await createHarness({ label: 'api' });
});

describe('secrets API', () => {
  it('when a secret is written twice, it keeps both versions and reads the latest by default', async () => {
    const first = await h.call('PUT', '/v1/secrets/team-a/db/password', { body: { value: 'one' } });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ path: 'team-a/db/password', version: 1 });
    const second = await h.call('PUT', '/v1/secrets/team-a/db/password', { body: { value: 'two' } });
    expect(second.body.version).toBe(2);
    const latest = await h.call('GET', '/v1/secrets/team-a/db/password');
    expect(latest.body).toMatchObject({ path: 'team-a/db/password', version: 2, value: 'two' });
    const v1 = await h.call('GET', '/v1/secrets/team-a/db/password?version=1');
    expect(v1.body).toMatchObject({ version: 1, value: 'one' });
  });
});
