import { DeleteItemCommand, GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { beforeEach, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';

let h: Harness;
const SECRET_A = 'tamper-value-AAAA';
const SECRET_B = 'tamper-value-BBBB';
let n = 0;
let a: string;
let b: string;

const versionKey = (path: string, version: number) => ({
  pk: { S: `S#${path}` },
  sk: { S: `V#${String(version).padStart(10, '0')}` },
});

async function item(path: string, version: number) {
  const out = await h.client.send(
    new GetItemCommand({ TableName: h.tables.secrets, Key: versionKey(path, version) }),
  );
  if (!out.Item) throw new Error('missing item');
  return out.Item;
}

async function save(raw: Record<string, any>) {
  await h.client.send(new PutItemCommand({ TableName: h.tables.secrets, Item: raw }));
}

async function expectIntegrityError(path: string, version?: number) {
  const res = await h.call('GET', `/v1/secrets/${path}${version ? `?version=${version}` : ''}`);
  expect(res.status).toBe(500);
  expect(Object.keys(res.body.error).sort()).toEqual(['code', 'message', 'requestId']);
  expect(res.body.error.code).toBe('integrity_error');
  expect(res.text).not.toContain(SECRET_A);
  expect(res.text).not.toContain(SECRET_B);
  expect(res.text).not.toContain('v2-');
}

beforeEach(async () => {
  h ??= await createHarness({ label: 'tamper' });
  n++;
  a = `t${n}/a`;
  b = `t${n}/b`;
  await h.call('PUT', `/v1/secrets/${a}`, { body: { value: SECRET_A } });
  await h.call('PUT', `/v1/secrets/${a}`, { body: { value: `v2-${SECRET_A}` } });
  await h.call('PUT', `/v1/secrets/${b}`, { body: { value: SECRET_B } });
  // These tests tamper with version items. A read of a current version is served by the current
  // item when the head vouches for it (current-copy.test.ts tampers with that one); without it,
  // every read here takes the version item, as reads did before current items.
  for (const path of [a, b]) {
    await h.client.send(
      new DeleteItemCommand({ TableName: h.tables.secrets, Key: { pk: { S: `S#${path}` }, sk: { S: 'C' } } }),
    );
  }
});

const flip = (bytes: Uint8Array, at: number) => {
  const copy = Uint8Array.from(bytes);
  copy[at] = (copy[at] as number) ^ 0x01;
  return copy;
};

describe('tampering with stored items', () => {
  it('when the ciphertext is swapped between two secrets, the read fails with integrity_error', async () => {
    const ia = await item(a, 1);
    const ib = await item(b, 1);
    await save({ ...ia, ct: ib.ct, iv: ib.iv });
    await expectIntegrityError(a, 1);
  });

  it('when the wrapped key is swapped between two secrets, the read fails', async () => {
    const ia = await item(a, 1);
    const ib = await item(b, 1);
    await save({ ...ia, wk: ib.wk });
    await expectIntegrityError(a, 1);
  });

  it('when the whole envelope (ciphertext, IV and wrapped key) is moved to another secret, the read fails', async () => {
    const ia = await item(a, 1);
    const ib = await item(b, 1);
    await save({ ...ib, ct: ia.ct, iv: ia.iv, wk: ia.wk, kid: ia.kid });
    await expectIntegrityError(b, 1);
  });

  it('when the envelopes of two versions of one secret are swapped, both reads fail', async () => {
    const v1 = await item(a, 1);
    const v2 = await item(a, 2);
    await save({ ...v1, ct: v2.ct, iv: v2.iv, wk: v2.wk });
    await save({ ...v2, ct: v1.ct, iv: v1.iv, wk: v1.wk });
    await expectIntegrityError(a, 1);
    await expectIntegrityError(a, 2);
  });

  it('when one byte of the ciphertext, IV or wrapped key is flipped, the read fails', async () => {
    const original = await item(a, 1);
    for (const field of ['ct', 'iv', 'wk'] as const) {
      for (const at of [0, 5]) {
        await save({ ...original, [field]: { B: flip(original[field]?.B as Uint8Array, at) } });
        await expectIntegrityError(a, 1);
      }
      const bytes = original[field]?.B as Uint8Array;
      await save({ ...original, [field]: { B: flip(bytes, bytes.length - 1) } });
      await expectIntegrityError(a, 1);
    }
    await save(original);
    expect((await h.call('GET', `/v1/secrets/${a}?version=1`)).body.value).toBe(SECRET_A);
  });

  it('when the stored path or version attribute is changed, the read fails', async () => {
    const original = await item(a, 1);
    await save({ ...original, path: { S: b } });
    await expectIntegrityError(a, 1);
    await save({ ...original, version: { N: '2' } });
    await expectIntegrityError(a, 1);
  });

  it('when a version item is copied under another secret’s key, the read fails', async () => {
    const ia = await item(a, 1);
    await save({ ...ia, ...versionKey(b, 1), path: { S: b } });
    await expectIntegrityError(b, 1);
  });

  it('when the algorithm, key id or ciphertext length is altered, the read fails', async () => {
    const original = await item(a, 1);
    await save({ ...original, alg: { S: 'NONE' } });
    await expectIntegrityError(a, 1);
    await save({ ...original, kid: { S: 'local:0000000000000000' } });
    await expectIntegrityError(a, 1);
    await save({ ...original, ct: { B: new Uint8Array(4) } });
    await expectIntegrityError(a, 1);
    await save({ ...original, ct: { S: 'not-binary' } });
    await expectIntegrityError(a, 1);
  });

  it('when an integrity error happens, the log names no value and no key material', async () => {
    const ia = await item(a, 1);
    const ib = await item(b, 1);
    await save({ ...ia, wk: ib.wk });
    await expectIntegrityError(a, 1);
    const logs = h.logs.join('\n');
    expect(logs).not.toContain(SECRET_A);
    expect(logs).not.toContain(SECRET_B);
    expect(logs).not.toContain(Buffer.from(ib.wk?.B as Uint8Array).toString('base64'));
  });
});
