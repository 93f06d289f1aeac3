import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { WriterChain } from '../../lib/audit/chain.js';
import { chainIndexKey, recordKey } from '../../lib/audit/keys.js';
import type { AuditReader } from '../../lib/audit/reader.js';
import { checkpointMessage, recordHash, requestFields, sealRecord } from '../../lib/audit/record.js';
import { exportLines } from '../../lib/audit/review.js';
import type { VerifyReport } from '../../lib/audit/verifier.js';
import type { ProblemKind } from '../../lib/audit/verify-problems.js';
import { verifyLines, verifyTable } from '../../lib/audit/verify-sources.js';
import { LocalRootSigner } from '../../lib/keys/local.js';
import type { RootSigner } from '../../lib/keys/provider.js';
import { auditFixture, context, KmsLikeRootSigner, tamper } from '../support/audit-fixtures.js';
import { createHarness } from '../support/harness.js';

type Fixture = Awaited<ReturnType<typeof auditFixture>>;

async function chainsOf(reader: AuditReader): Promise<string[]> {
  const chains: string[] = [];
  for await (const entry of reader.chainIndex()) chains.push(entry.chain);
  return chains.sort();
}

async function exported(reader: AuditReader): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of exportLines(reader)) lines.push(line);
  return lines;
}

const fromLines = (lines: readonly string[]) =>
  async function* () {
    yield* lines;
  };

function expectFirst(
  report: VerifyReport,
  kind: ProblemKind,
  where: { chain?: string; seq?: number; checkpoint?: number } = {},
) {
  expect(report.ok).toBe(false);
  expect(report.problems[0]).toMatchObject({ kind, ...where });
}

/**
 * A small log: two writers (one chain each), 20 records each, a checkpoint, then 5 more records
 * each that no checkpoint covers yet.
 */
async function smallLog(label: string, root?: RootSigner): Promise<Fixture & { a: string; b: string }> {
  const fx = await auditFixture(label, root);
  const writers = [fx.trail(), fx.trail()];
  for (let i = 0; i < 20; i++)
    await Promise.all(writers.map((w, k) => w.finish(context(i * 2 + k), { status: 200 })));
  await fx.checkpointer.write();
  for (let i = 20; i < 25; i++)
    await Promise.all(writers.map((w, k) => w.finish(context(i * 2 + k), { status: 200 })));
  const [a, b] = await chainsOf(fx.reader);
  const clean = await verifyTable(fx.reader, { rootKeys: [fx.rootPem] });
  expect(clean.problems).toEqual([]);
  return { ...fx, a: a as string, b: b as string };
}

describe('audit verification of an untouched log', () => {
  // Over a thousand signed writes and a full verification: the heaviest test of the file, given
  // room for a busy CI machine. What it checks is the interleaving (six chains written at once,
  // four checkpoints and HTTP changes among them), which does not grow with the count.
  it('when over a thousand records come from several concurrent writers, with checkpoints between, the verifier passes', async () => {
    const fx = await auditFixture('audit-bulk');
    // Three processes, two chains each, writing at once; one of them also serves HTTP changes.
    const writers = [fx.trail({ chains: 2 }), fx.trail({ chains: 2 }), fx.trail({ chains: 2 })];
    const h = await createHarness({ label: 'audit-bulk', audit: writers[0] });
    const perWriter = 400;
    let checkpoints = 0;
    await Promise.all(
      writers.map(async (w, k) => {
        const inFlight = new Set<Promise<void>>();
        for (let i = 0; i < perWriter; i++) {
          const p = w
            .finish(context(i * 3 + k), { status: i % 13 === 0 ? 403 : 200 })
            .finally(() => inFlight.delete(p));
          inFlight.add(p);
          if (inFlight.size >= 8) await Promise.race(inFlight);
          if (k === 0 && i % (perWriter / 4) === 0) {
            checkpoints++;
            await fx.checkpointer.write();
            await h.call('PUT', `/v1/secrets/bulk/s${i}`, { body: { value: `v${i}` } });
          }
        }
        await Promise.all(inFlight);
      }),
    );
    await fx.checkpointer.write();
    const report = await verifyTable(fx.reader, { rootKeys: [fx.rootPem] });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.records).toBeGreaterThanOrEqual(3 * perWriter + checkpoints);
    expect(report.chains).toBe(6);
    expect(report.checkpoints).toBe(checkpoints + 1);
    expect(report.unsealedRecords).toBe(0);

    // The same log as a JSON-lines export verifies too.
    const lines = await exported(fx.reader);
    const fromFile = await verifyLines(fromLines(lines), { rootKeys: [fx.rootPem] });
    expect(fromFile.problems).toEqual([]);
    expect(fromFile.records).toBe(report.records);

    // Against any other root key, nothing holds.
    const other = generateKeyPairSync('ed25519').publicKey;
    const wrongRoot = await verifyTable(fx.reader, { rootKeys: [other] });
    expect(wrongRoot.problems.map((p) => p.kind)).toContain('bad_certificate');
    expect(wrongRoot.problems.map((p) => p.kind)).toContain('bad_checkpoint_signature');
  }, 180_000);

  it('when the root key is a KMS-style ECDSA P-256 key (DER signatures), the verifier checks it too', async () => {
    const root = new KmsLikeRootSigner();
    const fx = await smallLog('audit-ecdsa', root);
    const report = await verifyTable(fx.reader, { rootKeys: [fx.rootPem] });
    expect(report.ok).toBe(true);
    expect(report.checkpoints).toBe(1);
    const other = await new KmsLikeRootSigner().publicKeyPem();
    expectFirst(await verifyTable(fx.reader, { rootKeys: [other] }), 'bad_checkpoint_signature');
  });
});

describe('audit tampering is detected and named', () => {
  it('when a field of a record is changed, the verifier names the record: hash_mismatch', async () => {
    const fx = await smallLog('audit-t-field');
    const t = tamper(fx.client, fx.tables.audit);
    await t.put({ ...(await t.getRecord(fx.a, 5)), path: 'app/innocent', decision: 'allow' });
    expectFirst(await verifyTable(fx.reader, { rootKeys: [fx.rootPem] }), 'hash_mismatch', {
      chain: fx.a,
      seq: 5,
    });
  });

  it('when a field is changed and the hash recomputed, the signature gives it away: bad_signature', async () => {
    const fx = await smallLog('audit-t-rehash');
    const t = tamper(fx.client, fx.tables.audit);
    const { pk, sk, ...record } = await t.getRecord(fx.a, 6);
    const changed = { ...record, principal: { type: 'User', id: 'dev:someone-else' } };
    await t.put({ ...changed, hash: recordHash(changed), pk, sk });
    expectFirst(await verifyTable(fx.reader, { rootKeys: [fx.rootPem] }), 'bad_signature', {
      chain: fx.a,
      seq: 6,
    });
  });

  it('when a record in the middle of a chain is deleted: missing_record', async () => {
    const fx = await smallLog('audit-t-delete');
    await tamper(fx.client, fx.tables.audit).deleteRecord(fx.b, 7);
    expectFirst(await verifyTable(fx.reader, { rootKeys: [fx.rootPem] }), 'missing_record', {
      chain: fx.b,
      seq: 7,
    });
  });

  it('when two records are swapped in the table: out_of_order', async () => {
    const fx = await smallLog('audit-t-swap');
    const t = tamper(fx.client, fx.tables.audit);
    const five = await t.getRecord(fx.a, 5);
    const six = await t.getRecord(fx.a, 6);
    await t.put({ ...six, pk: five.pk, sk: five.sk });
    await t.put({ ...five, pk: six.pk, sk: six.sk });
    expectFirst(await verifyTable(fx.reader, { rootKeys: [fx.rootPem] }), 'out_of_order', {
      chain: fx.a,
      seq: 5,
    });
  });

  it('when two records are swapped in an export, or one is removed from it: out_of_order, missing_record', async () => {
    const fx = await smallLog('audit-t-file');
    const lines = await exported(fx.reader);
    const at = (seq: number) =>
      lines.findIndex((l) => {
        const v = JSON.parse(l);
        return v.chain === fx.a && v.seq === seq && v.type === 'request';
      });
    const swapped = [...lines];
    [swapped[at(8)], swapped[at(9)]] = [swapped[at(9)] as string, swapped[at(8)] as string];
    expectFirst(await verifyLines(fromLines(swapped), { rootKeys: [fx.rootPem] }), 'out_of_order', {
      chain: fx.a,
    });
    const removed = lines.filter((_, i) => i !== at(8));
    expectFirst(await verifyLines(fromLines(removed), { rootKeys: [fx.rootPem] }), 'missing_record', {
      chain: fx.a,
      seq: 8,
    });
    const edited = lines.map((l, i) => (i === at(3) ? l.replace('"status":200', '"status":500') : l));
    expectFirst(await verifyLines(fromLines(edited), { rootKeys: [fx.rootPem] }), 'hash_mismatch', {
      chain: fx.a,
      seq: 3,
    });
  });

  it('when a record signed with a fresh key is appended to a chain: bad_signature', async () => {
    const fx = await smallLog('audit-t-forge');
    const t = tamper(fx.client, fx.tables.audit);
    const head = await fx.reader.head(fx.a);
    const last = head?.item as Record<string, unknown>;
    const forger = generateKeyPairSync('ed25519').privateKey;
    const { hash: _h, sig: _s, ...body } = last;
    const forged = sealRecord(
      {
        ...body,
        seq: Number(last.seq) + 1,
        prev: String(last.hash),
        requestId: 'forged',
        principal: null,
      } as never,
      forger,
    );
    await t.put({ ...(forged as object), ...recordKey(fx.a, Number(last.seq) + 1) });
    expectFirst(await verifyTable(fx.reader, { rootKeys: [fx.rootPem] }), 'bad_signature', {
      chain: fx.a,
      seq: Number(last.seq) + 1,
    });
  });

  it('when a record dressed as a certificate is appended to a chain: bad_certificate', async () => {
    const fx = await smallLog('audit-t-cert2');
    const t = tamper(fx.client, fx.tables.audit);
    const head = (await fx.reader.head(fx.a))?.item as Record<string, unknown>;
    const seq = Number(head.seq) + 1;
    const { pk: _pk, sk: _sk, ...genesis } = await t.getRecord(fx.a, 0);
    const body = { ...genesis, seq, prev: String(head.hash), writer: 'forger' };
    await t.put({ ...body, hash: recordHash(body), ...recordKey(fx.a, seq) });
    expectFirst(await verifyTable(fx.reader, { rootKeys: [fx.rootPem] }), 'bad_certificate', {
      chain: fx.a,
      seq,
    });
  });

  it('when a whole chain is forged with a fresh key and its own certificate: bad_certificate', async () => {
    const fx = await smallLog('audit-t-chain');
    const t = tamper(fx.client, fx.tables.audit);
    const forgerRoot = await LocalRootSigner.open(await mkdtemp(join(tmpdir(), 'coffer-forger-')));
    const chain = new WriterChain('forger', new Date());
    const genesis = await chain.certificate(forgerRoot);
    chain.commit(genesis);
    const record = chain.seal(requestFields(context(1), { status: 200 }, undefined));
    await t.put({ ...genesis, ...recordKey(chain.id, 0) });
    await t.put({ ...record, ...recordKey(chain.id, 1) });
    await t.put({
      ...chainIndexKey(genesis.notAfter, chain.id),
      type: 'chain-index',
      chain: chain.id,
      notAfter: genesis.notAfter,
    });
    expectFirst(await verifyTable(fx.reader, { rootKeys: [fx.rootPem] }), 'bad_certificate', {
      chain: chain.id,
      seq: 0,
    });
  });

  it("when a chain's tail is removed before its last checkpoint: truncated", async () => {
    const fx = await smallLog('audit-t-tail');
    const t = tamper(fx.client, fx.tables.audit);
    // The checkpoint signed record 20 of each chain; records 21-25 came after it.
    for (let seq = 18; seq <= 25; seq++) await t.deleteRecord(fx.b, seq);
    expectFirst(await verifyTable(fx.reader, { rootKeys: [fx.rootPem] }), 'truncated', {
      chain: fx.b,
      seq: 18,
    });
  });

  it("when a chain's certificate is replaced by one for another key: bad_certificate", async () => {
    const fx = await smallLog('audit-t-cert');
    const t = tamper(fx.client, fx.tables.audit);
    const original = await t.getRecord(fx.a, 0);
    const otherRoot = await LocalRootSigner.open(await mkdtemp(join(tmpdir(), 'coffer-other-')));
    const impostor = new WriterChain('test', new Date(String(original.time)));
    const cert = await impostor.certificate(otherRoot);
    // Same chain id and times, another key, certified by another root.
    const forgedCert = sealRecord(
      { ...cert, chain: fx.a, notAfter: String(original.notAfter), hash: undefined, sig: undefined } as never,
      generateKeyPairSync('ed25519').privateKey,
    );
    await t.put({ ...(forgedCert as object), pk: original.pk, sk: original.sk });
    expectFirst(await verifyTable(fx.reader, { rootKeys: [fx.rootPem] }), 'bad_certificate', {
      chain: fx.a,
      seq: 0,
    });
  });

  it('when a checkpoint signed by another root key is added, or a checkpoint is re-signed: bad_checkpoint_signature', async () => {
    const fx = await smallLog('audit-t-cp');
    const t = tamper(fx.client, fx.tables.audit);
    const cp = await t.getCheckpoint(1);
    const otherRoot = await LocalRootSigner.open(await mkdtemp(join(tmpdir(), 'coffer-other-')));
    const { pk: _pk, sk: _sk, sig, ...body } = cp;
    const next = { ...body, seq: 2, prevSig: sig, time: new Date().toISOString(), heads: [] };
    const nextSig = Buffer.from(await otherRoot.sign(checkpointMessage(next))).toString('base64');
    await t.put({ ...next, sig: nextSig, pk: 'CP', sk: '000000000002' });
    expectFirst(await verifyTable(fx.reader, { rootKeys: [fx.rootPem] }), 'bad_checkpoint_signature', {
      checkpoint: 2,
    });

    await t.deleteCheckpoint(2);
    const rewritten = { ...body, heads: [] };
    const rewrittenSig = Buffer.from(await otherRoot.sign(checkpointMessage(rewritten))).toString('base64');
    await t.put({ ...rewritten, sig: rewrittenSig, pk: 'CP', sk: '000000000001' });
    expectFirst(await verifyTable(fx.reader, { rootKeys: [fx.rootPem] }), 'bad_checkpoint_signature', {
      checkpoint: 1,
    });
  });

  it('when a checkpoint in the middle is deleted: missing_checkpoint; a checkpointed chain deleted whole: missing_chain', async () => {
    const fx = await smallLog('audit-t-cpgap');
    await fx.checkpointer.write();
    await fx.checkpointer.write();
    const t = tamper(fx.client, fx.tables.audit);
    await t.deleteCheckpoint(2);
    expectFirst(await verifyTable(fx.reader, { rootKeys: [fx.rootPem] }), 'missing_checkpoint', {
      checkpoint: 3,
    });

    const fy = await smallLog('audit-t-gone');
    const u = tamper(fy.client, fy.tables.audit);
    for (let seq = 0; seq <= 25; seq++) await u.deleteRecord(fy.b, seq);
    const report = await verifyTable(fy.reader, { rootKeys: [fy.rootPem] });
    expect(report.problems.map((p) => p.kind)).toContain('missing_chain');
    expect(report.problems.find((p) => p.kind === 'missing_chain')?.chain).toBe(fy.b);
  });

  it('when checkpoints stop, a maximum checkpoint age makes the verifier fail: stale_checkpoint', async () => {
    const fx = await smallLog('audit-t-stale');
    const later = new Date(Date.now() + 2 * 3600_000);
    const report = await verifyTable(fx.reader, {
      rootKeys: [fx.rootPem],
      maxCheckpointAgeMs: 3600_000,
      now: () => later,
    });
    expectFirst(report, 'stale_checkpoint', { checkpoint: 1 });
    expect(report.unsealedRecords).toBe(10);
  });
});
