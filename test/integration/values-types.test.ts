import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headKey, versionKey } from '../../lib/store/keys.js';
import { BYTE_CASES } from '../support/bytes.js';
import { createHarness, type Harness } from '../support/harness.js';
import { openssl, opensslAvailable } from '../support/openssl-certs.js';

let h: Harness;
let dir: string;
beforeAll(async () => {
  h = await createHarness({ label: 'valtypes' });
  dir = await mkdtemp(join(tmpdir(), 'coffer-types-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const put = (path: string, body: unknown) => h.call('PUT', `/v1/secrets/${path}`, { body });
const get = (path: string) => h.call('GET', `/v1/secrets/${path}`);
const meta = (path: string) => h.call('GET', `/v1/meta/${path}`);

describe('binary values: the API', () => {
  for (const [name, make] of BYTE_CASES) {
    it(`when bytes (${name}) are written as valueBase64, they read back exactly as valueBase64`, async () => {
      const bytes = make();
      const path = `bin/api-${name.replace(/[^a-z0-9]/gi, '-')}`;
      const res = await put(path, { valueBase64: bytes.toString('base64') });
      expect(res.status, res.text).toBe(200);
      const got = await get(path);
      expect(got.status).toBe(200);
      expect(got.body.type).toBe('binary');
      expect(got.body.value).toBeUndefined();
      expect(Buffer.from(got.body.valueBase64, 'base64').equals(bytes)).toBe(true);
      expect((await meta(path)).body.type).toBe('binary');
    });
  }

  it('when bytes are one more than 64 KiB, it answers 413 value_too_large (the limit is on bytes)', async () => {
    const res = await put('bin/big', { valueBase64: randomBytes(64 * 1024 + 1).toString('base64') });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('value_too_large');
  });

  it('when a body has both value and valueBase64, neither, or a non-canonical base64, it answers 400', async () => {
    for (const body of [
      { value: 'a', valueBase64: 'YQ==' },
      {},
      { valueBase64: 'YR==' },
      { valueBase64: 'YQ' },
      { valueBase64: 'Y Q==' },
      { valueBase64: 'YQ==', type: 'nope' },
    ]) {
      const res = await put('bin/bad', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
  });

  it('when a text type gets bytes that are not UTF-8, it answers 400 value_not_text', async () => {
    const raw = Buffer.from([0xff, 0xfe, 0x80, 0x6f, 0x6b]).toString('base64');
    for (const type of ['text', 'json', 'password']) {
      const res = await put('bin/not-text', { valueBase64: raw, type });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('value_not_text');
    }
    // A UTF-8 value given as bytes is fine for a text type, and reads as text.
    const ok = await put('bin/utf8-bytes', {
      valueBase64: Buffer.from('héllo').toString('base64'),
      type: 'text',
    });
    expect(ok.status).toBe(200);
    expect((await get('bin/utf8-bytes')).body).toMatchObject({ type: 'text', value: 'héllo' });
  });

  it('when a text secret is written, it reads with type text and no valueBase64', async () => {
    await put('bin/plain', { value: 'plain' });
    const got = await get('bin/plain');
    expect(got.body).toEqual({
      path: 'bin/plain',
      version: 1,
      type: 'text',
      value: 'plain',
      createdAt: got.body.createdAt,
    });
  });

  it('when a later write leaves the type out, the type is kept; a given type changes it; old versions keep theirs', async () => {
    await put('types/sticky', { valueBase64: Buffer.from([1, 2, 3]).toString('base64') });
    await put('types/sticky', { value: 'abc' });
    expect((await get('types/sticky')).body).toMatchObject({ type: 'binary', valueBase64: 'YWJj' });
    await put('types/sticky', { value: '{"a":"b"}', type: 'json' });
    expect((await get('types/sticky')).body).toMatchObject({ type: 'json', value: '{"a":"b"}' });
    const m = (await meta('types/sticky')).body;
    expect(m.type).toBe('json');
    expect(m.versions.map((v: { type: string }) => v.type)).toEqual(['binary', 'binary', 'json']);
    const v1 = await h.call('GET', '/v1/secrets/types/sticky?version=1');
    expect(v1.body).toMatchObject({ type: 'binary', valueBase64: 'AQID' });
    // Kept as json: a value that is not a JSON object is now refused.
    const refused = await put('types/sticky', { value: 'plain' });
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe('invalid_value');
  });

  it('when the same Idempotency-Key comes with other bytes, it is refused; with the same bytes, replayed', async () => {
    const headers = { 'idempotency-key': 'bin-idem-1' };
    const body = { valueBase64: Buffer.from([0xff, 0x00]).toString('base64') };
    const first = await h.call('PUT', '/v1/secrets/bin/idem', { body, headers });
    const again = await h.call('PUT', '/v1/secrets/bin/idem', { body, headers });
    expect(again.body).toEqual(first.body);
    const other = await h.call('PUT', '/v1/secrets/bin/idem', {
      body: { valueBase64: Buffer.from([0xff, 0x01]).toString('base64') },
      headers,
    });
    expect(other.status).toBe(400);
    expect(other.body.error.code).toBe('idempotency_key_reused');
  });

  it('when a batch reads a binary and a text secret, each comes in its own form', async () => {
    await put('bin/batch-b', { valueBase64: 'gA==' });
    await put('bin/batch-t', { value: 't' });
    const res = await h.call('POST', '/v1/batch-get', { body: { paths: ['bin/batch-b', 'bin/batch-t'] } });
    expect(res.body.results).toMatchObject([
      { path: 'bin/batch-b', type: 'binary', valueBase64: 'gA==' },
      { path: 'bin/batch-t', type: 'text', value: 't' },
    ]);
  });
});

describe('binary values and types: stored authenticated', () => {
  it("when a version's stored type is changed in the table, reading it fails with integrity_error", async () => {
    await put('tamper/vt', { valueBase64: Buffer.from('looks like text').toString('base64') });
    const key = { pk: { S: '' }, sk: { S: '' } };
    const vk = versionKey('tamper/vt', 1);
    key.pk.S = vk.pk;
    key.sk.S = vk.sk;
    const item = (await h.client.send(new GetItemCommand({ TableName: h.tables.secrets, Key: key }))).Item;
    expect(item?.vt).toEqual({ S: 'binary' });
    const { vt: _vt, ...relabelled } = item as NonNullable<typeof item>;
    await h.client.send(new PutItemCommand({ TableName: h.tables.secrets, Item: relabelled }));
    // Its copy in the current item too: the head's digest then refuses the copy, and the read
    // takes the version item, whose AAD names the type.
    const copyKey = { pk: { S: vk.pk }, sk: { S: 'C' } };
    const copy = (await h.client.send(new GetItemCommand({ TableName: h.tables.secrets, Key: copyKey })))
      .Item;
    const { vt: _cvt, ...relabelledCopy } = copy as NonNullable<typeof copy>;
    await h.client.send(new PutItemCommand({ TableName: h.tables.secrets, Item: relabelledCopy }));
    const res = await get('tamper/vt');
    expect(res.status).toBe(500);
    expect(res.body.error.code).toBe('integrity_error');
  });

  it("when a head's secret type is changed in the table, the head fails its MAC", async () => {
    await put('tamper/head', { value: 'x' });
    const hk = headKey('tamper/head');
    const Key = { pk: { S: hk.pk }, sk: { S: hk.sk } };
    const item = (await h.client.send(new GetItemCommand({ TableName: h.tables.secrets, Key }))).Item;
    expect(item?.secretType).toEqual({ S: 'text' });
    await h.client.send(
      new PutItemCommand({
        TableName: h.tables.secrets,
        Item: { ...(item as NonNullable<typeof item>), secretType: { S: 'binary' } },
      }),
    );
    expect((await meta('tamper/head')).body.error.code).toBe('integrity_error');
  });
});

describe('types: secrets written before types', () => {
  it('when a head and its version carry no type (as before types), they read as text', async () => {
    await put('legacy/old', { value: 'old value' });
    const head = await h.store.getHead('legacy/old');
    if (!head) throw new Error('no head');
    const { type: _type, ...untyped } = head;
    // The head as an older Coffer wrote it: authenticated, without `secretType` (revision 1 again).
    const item = h.store.sealHead(untyped, undefined);
    expect(item.secretType).toBeUndefined();
    await h.client.send(new PutItemCommand({ TableName: h.tables.secrets, Item: item }));
    const m = await meta('legacy/old');
    expect(m.status).toBe(200);
    expect(m.body.type).toBe('text');
    expect(m.body.versions[0].type).toBe('text');
    expect((await get('legacy/old')).body).toMatchObject({ type: 'text', value: 'old value' });
    // A write without a type keeps it text.
    await put('legacy/old', { value: 'new value' });
    expect((await meta('legacy/old')).body.type).toBe('text');
  });
});

const CANARY = 'CANARY-types-7f3a';

describe('types: json', () => {
  it('when a json value is an object of string fields, it is stored; anything else is 400 invalid_value', async () => {
    expect(
      (await put('json/ok', { value: `{"user":"app","password":"${CANARY}"}`, type: 'json' })).status,
    ).toBe(200);
    expect((await meta('json/ok')).body.type).toBe('json');
    for (const value of [
      '[]',
      'null',
      `"${CANARY}"`,
      `{"n":1,"p":"${CANARY}"}`,
      `{"${CANARY}":{}}`,
      `${CANARY}{`,
    ]) {
      const res = await put('json/bad', { value, type: 'json' });
      expect(res.status, value).toBe(400);
      expect(res.body.error.code).toBe('invalid_value');
      expect(res.text).not.toContain(CANARY);
    }
    expect(h.logs.join('\n')).not.toContain(CANARY);
  });
});

describe('types: keypair', () => {
  const pem = (k: ReturnType<typeof generateKeyPairSync>) => ({
    private_key: String(k.privateKey.export({ type: 'pkcs8', format: 'pem' })),
    public_key: String(k.publicKey.export({ type: 'spki', format: 'pem' })),
  });

  it('when the public key is the private key’s, it is stored and the public key is metadata', async () => {
    for (const [name, k] of [
      ['ed25519', generateKeyPairSync('ed25519')],
      ['ec', generateKeyPairSync('ec', { namedCurve: 'P-256' })],
      ['rsa', generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ] as const) {
      const value = pem(k);
      const res = await put(`kp/${name}`, { value: JSON.stringify(value), type: 'keypair' });
      expect(res.status, res.text).toBe(200);
      const m = (await meta(`kp/${name}`)).body;
      expect(m.type).toBe('keypair');
      expect(m.keypair).toEqual({ publicKey: value.public_key, keyType: name });
      expect(JSON.stringify(m)).not.toContain('PRIVATE KEY');
    }
  });

  it('when the keys do not match, it answers 400 key_mismatch; unreadable keys are invalid_value', async () => {
    const a = pem(generateKeyPairSync('ed25519'));
    const b = pem(generateKeyPairSync('ed25519'));
    const mismatch = await put('kp/bad', {
      value: JSON.stringify({ private_key: a.private_key, public_key: b.public_key }),
      type: 'keypair',
    });
    expect(mismatch.status).toBe(400);
    expect(mismatch.body.error.code).toBe('key_mismatch');
    for (const value of [
      { private_key: a.private_key },
      { private_key: a.private_key, public_key: a.private_key },
      { private_key: a.public_key, public_key: a.public_key },
      {
        private_key: `-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n`,
        public_key: a.public_key,
      },
      { private_key: `${a.private_key}${CANARY}`, public_key: a.public_key },
      { private_key: a.private_key, public_key: a.public_key, extra: 1 },
    ]) {
      const res = await put('kp/bad', { value: JSON.stringify(value), type: 'keypair' });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_value');
      expect(res.text).not.toContain('-----BEGIN');
      expect(res.text).not.toContain(CANARY);
    }
    expect((await get('kp/bad')).status).toBe(404);
  });
});

describe.skipIf(!opensslAvailable())('types: certificate (openssl makes the certificates)', () => {
  async function selfSigned(name: string, sans: string) {
    openssl(
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.crt`,
        '-days',
        '30',
        '-subj',
        `/O=Coffer Test/CN=${name}.example`,
        '-addext',
        `subjectAltName=${sans}`,
      ],
      dir,
    );
    return {
      certificate: await readFile(join(dir, `${name}.crt`), 'utf8'),
      private_key: await readFile(join(dir, `${name}.key`), 'utf8'),
    };
  }

  it('when a certificate matches its key, it is stored and its names, serial, fingerprint and validity are metadata', async () => {
    const leaf = await selfSigned('api', 'DNS:api.example,DNS:www.api.example,IP:127.0.0.1');
    const ca = await selfSigned('ca', 'DNS:ca.example');
    const res = await put('cert/api', {
      value: JSON.stringify({ ...leaf, chain: ca.certificate }),
      type: 'certificate',
    });
    expect(res.status, res.text).toBe(200);
    const m = (await meta('cert/api')).body;
    const x = new X509Certificate(leaf.certificate);
    expect(m.type).toBe('certificate');
    expect(m.certificate).toMatchObject({
      subject: 'O=Coffer Test\nCN=api.example',
      sans: ['DNS:api.example', 'DNS:www.api.example', 'IP Address:127.0.0.1'],
      serial: x.serialNumber.toUpperCase(),
      fingerprint: x.fingerprint256,
      notBefore: new Date(x.validFrom).toISOString(),
      notAfter: new Date(x.validTo).toISOString(),
    });
    // openssl's own fingerprint of the same certificate.
    const printed = openssl(['x509', '-in', 'api.crt', '-noout', '-fingerprint', '-sha256'], dir);
    expect(printed.trim().split('=')[1]).toBe(m.certificate.fingerprint);
    expect(JSON.stringify(m)).not.toContain('PRIVATE KEY');
    // The value reads back exactly, fields and all.
    expect(JSON.parse((await get('cert/api')).body.value)).toEqual({ ...leaf, chain: ca.certificate });
  });

  it('when the key is not the certificate’s, or a field is not a certificate, it answers 400', async () => {
    const leaf = await selfSigned('other', 'DNS:other.example');
    const ca = await selfSigned('ca2', 'DNS:ca2.example');
    const mismatch = await put('cert/bad', {
      value: JSON.stringify({ certificate: leaf.certificate, private_key: ca.private_key, chain: '' }),
      type: 'certificate',
    });
    expect(mismatch.status).toBe(400);
    expect(mismatch.body.error.code).toBe('key_mismatch');
    for (const value of [
      { certificate: leaf.certificate, private_key: leaf.private_key },
      { certificate: leaf.private_key, private_key: leaf.private_key, chain: '' },
      { certificate: leaf.certificate, private_key: leaf.private_key, chain: leaf.private_key },
      { certificate: `${leaf.certificate}${ca.certificate}`, private_key: leaf.private_key, chain: '' },
    ]) {
      const res = await put('cert/bad', { value: JSON.stringify(value), type: 'certificate' });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_value');
      expect(res.text).not.toContain('-----BEGIN');
    }
  });
});
