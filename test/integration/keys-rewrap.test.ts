import {
  type DynamoDBClient,
  GetItemCommand,
  ScanCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, it } from 'vitest';
import { Envelope } from '../../lib/crypto/envelope.js';
import { BranchKeyProvider } from '../../lib/keys/branch-keys.js';
import { LocalKeyProvider } from '../../lib/keys/local.js';
import { RewrapJob } from '../../lib/keys/rewrap.js';
import { LocalRootKeys } from '../../lib/keys/root-keys.js';
import { openLocalStorageMacKey } from '../../lib/keys/storage-mac.js';
import { ControlRecords } from '../../lib/store/control-records.js';
import { versionKey } from '../../lib/store/keys.js';
import { createHarness, type Harness } from '../support/harness.js';

let h: Harness;
const values = new Map<string, string>();

/** A deterministic PRNG (mulberry32): the kill points are random but reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Killed extends Error {}

/** A client that dies after `budget` sends, like a process killed mid-run. */
function dying(
  client: DynamoDBClient,
  budget: number,
  before?: (cmd: unknown) => Promise<void>,
): DynamoDBClient {
  let left = budget;
  return {
    send: async (cmd: unknown) => {
      if (left-- <= 0) throw new Killed('killed');
      await before?.(cmd);
      return client.send(cmd as never);
    },
  } as unknown as DynamoDBClient;
}

/** One re-wrap "process": its own control records (generation memory), key provider and cache. */
async function rewrapProcess(client: DynamoDBClient) {
  const control = new ControlRecords({
    client,
    table: h.tables.secrets,
    key: await openLocalStorageMacKey(h.dataDir),
    binding: h.tables.secrets,
  });
  const keys = new BranchKeyProvider({
    root: await LocalRootKeys.open(h.dataDir),
    control,
    binding: h.tables.secrets,
  });
  return new RewrapJob({
    client,
    table: h.tables.secrets,
    control,
    keys,
    binding: h.tables.secrets,
    itemsPerSecond: 100_000,
    pageSize: 7,
  });
}

const raw = async (path: string, version: number) => {
  const k = versionKey(path, version);
  return (
    await h.client.send(
      new GetItemCommand({ TableName: h.tables.secrets, Key: { pk: { S: k.pk }, sk: { S: k.sk } } }),
    )
  ).Item;
};

async function put(path: string, value: string): Promise<number> {
  const res = await h.call('PUT', `/v1/secrets/${path}`, { body: { value } });
  expect(res.status).toBe(200);
  values.set(`${path}@${res.body.version}`, value);
  return res.body.version;
}

/** Rewrites a version as data from before the hierarchy: its data key wrapped by the root itself. */
async function makeLegacy(path: string, version: number, value: string): Promise<void> {
  const legacy = new Envelope(await LocalKeyProvider.open(h.dataDir));
  const sealed = await legacy.seal(value, { table: h.tables.secrets, path, version });
  const k = versionKey(path, version);
  await h.client.send(
    new UpdateItemCommand({
      TableName: h.tables.secrets,
      Key: { pk: { S: k.pk }, sk: { S: k.sk } },
      UpdateExpression: 'SET iv = :iv, ct = :ct, wk = :wk, kid = :kid, kp = :kp',
      ExpressionAttributeValues: {
        ':iv': { B: sealed.iv },
        ':ct': { B: sealed.ciphertext },
        ':wk': { B: sealed.wrappedKey },
        ':kid': { S: sealed.keyId },
        ':kp': { S: 'local' },
      },
    }),
  );
}

async function allKids(): Promise<string[]> {
  const out = await h.client.send(
    new ScanCommand({
      TableName: h.tables.secrets,
      FilterExpression: 'begins_with(sk, :v) AND attribute_exists(wk)',
      ExpressionAttributeValues: { ':v': { S: 'V#' } },
    }),
  );
  return (out.Items ?? []).map((i) => i.kid?.S as string);
}

async function readAll(): Promise<void> {
  for (const [at, value] of values) {
    const [path, version] = at.split('@') as [string, string];
    const res = await h.call('GET', `/v1/secrets/${path}?version=${version}`);
    expect([at, res.body.value]).toEqual([at, value]);
  }
}

beforeAll(async () => {
  h = await createHarness({ label: 'rw' });
  for (let i = 0; i < 12; i++) {
    await put(`red/s${i}`, `red-${i}`);
    await put(`blue/x/s${i}`, `blue-${i}`);
  }
  // Some versions from before the hierarchy.
  for (let i = 0; i < 4; i++) await makeLegacy(`red/s${i}`, 1, `red-${i}`);
  expect((await h.call('POST', '/v1/keys/rotate', { body: {} })).status).toBe(200);
  for (let i = 0; i < 3; i++) await put(`red/s${i}`, `red-${i}-v2`);
});

describe('the re-wrap job', () => {
  it('when killed at random points and resumed, it loses nothing and every value stays readable', async () => {
    const random = prng(15);
    let kills = 0;
    let done = false;
    for (let run = 0; run < 200 && !done; run++) {
      const budget = 1 + Math.floor(random() * 12);
      const job = await rewrapProcess(dying(h.client, budget));
      try {
        done = (await job.run())?.done === true;
      } catch (err) {
        if (!(err instanceof Killed)) throw err;
        kills++;
      }
      // Values read correctly at every point in between.
      if (run % 10 === 0) await readAll();
    }
    expect(done).toBe(true);
    expect(kills).toBeGreaterThan(3);
    const kids = await allKids();
    expect(kids).toHaveLength(values.size);
    expect(new Set(kids)).toEqual(new Set(['bk:red:2', 'bk:blue:2']));
    await readAll();
    const job = await rewrapProcess(h.client);
    const cursor = await job.cursor();
    expect(cursor?.counts).toEqual({ red: { 'bk:red:2': 15 }, blue: { 'bk:blue:2': 12 } });
  });

  it('when a write or a destroy races the re-wrap, it is never overwritten', async () => {
    expect((await h.call('POST', '/v1/keys/rotate', { body: {} })).status).toBe(200);
    let raced = false;
    const job = await rewrapProcess(
      dying(h.client, Number.POSITIVE_INFINITY, async (cmd) => {
        if (raced || !(cmd instanceof UpdateItemCommand) || !String(cmd.input.Key?.sk?.S).startsWith('V#'))
          return;
        raced = true;
        // Between the job's read of this item and its conditional update: destroy it, and write
        // a new version of another secret.
        const pk = String(cmd.input.Key?.pk?.S);
        const path = pk.slice(2);
        const version = Number(String(cmd.input.Key?.sk?.S).slice(2));
        const res = await h.call('POST', `/v1/destroy/${path}`, { body: { versions: [version] } });
        expect(res.status).toBe(200);
        values.delete(`${path}@${version}`);
        (globalThis as { racedItem?: [string, number] }).racedItem = [path, version];
        await put('blue/x/s0', 'blue-0-raced');
      }),
    );
    const cursor = await job.run();
    expect(cursor?.done).toBe(true);
    expect(cursor?.skipped).toBe(1);
    const [path, version] = (globalThis as { racedItem?: [string, number] }).racedItem as [string, number];
    const item = await raw(path, version);
    expect(item?.destroyed?.BOOL).toBe(true);
    expect(item?.wk).toBeUndefined();
    expect(new Set(await allKids())).toEqual(new Set(['bk:red:3', 'bk:blue:3']));
    await readAll();
  });
});
