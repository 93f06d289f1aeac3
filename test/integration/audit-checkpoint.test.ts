import { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { runCheckpointJob } from '../../lib/audit/checkpoint-job.js';
import { verifyTable } from '../../lib/audit/verify-sources.js';
import { jsonLogger } from '../../lib/log.js';
import { auditFixture, context, KmsLikeRootSigner, tamper } from '../support/audit-fixtures.js';

const cloudwatch = mockClient(CloudWatchClient);
afterEach(() => cloudwatch.reset());

/** The metric values of every PutMetricData call, by name. */
function metrics(): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const call of cloudwatch.commandCalls(PutMetricDataCommand)) {
    expect(call.args[0].input.Namespace).toBe('Coffer/Audit');
    for (const d of call.args[0].input.MetricData ?? []) {
      const name = d.MetricName as string;
      out[name] = [...(out[name] ?? []), d.Value as number];
    }
  }
  return out;
}

describe('the scheduled checkpoint job', () => {
  it('when nothing happened, it still writes a checkpoint linked to the previous one, and reports no problem', async () => {
    const fx = await auditFixture('audit-job-quiet');
    const deps = {
      dynamo: fx.client,
      table: fx.tables.audit,
      root: fx.root,
      cloudwatch: new CloudWatchClient({}),
    };
    const first = await runCheckpointJob(deps);
    const second = await runCheckpointJob(deps);
    expect(first.checkpoint).toMatchObject({ seq: 1, heads: 0 });
    expect(second.checkpoint).toMatchObject({ seq: 2, heads: 0 });
    expect(second.problemCount).toBe(0);
    const cp2 = await tamper(fx.client, fx.tables.audit).getCheckpoint(2);
    const cp1 = await tamper(fx.client, fx.tables.audit).getCheckpoint(1);
    expect(cp2.prevSig).toBe(cp1.sig);
    expect(metrics()).toMatchObject({ VerificationProblems: [0, 0], CheckpointsWritten: [1, 1] });
    expect((await verifyTable(fx.reader, { rootKeys: [fx.rootPem] })).ok).toBe(true);
  });

  it('when chains grow between runs, it verifies only what is new since the last checkpoint and signs the new heads', async () => {
    const root = new KmsLikeRootSigner();
    const fx = await auditFixture('audit-job-grow', root);
    const writers = [fx.trail(), fx.trail()];
    const deps = { dynamo: fx.client, table: fx.tables.audit, root, cloudwatch: new CloudWatchClient({}) };
    for (let i = 0; i < 30; i++) await writers[i % 2]?.finish(context(i), { status: 200 });
    const first = await runCheckpointJob(deps);
    expect(first.checkpoint.heads).toBe(2);
    expect(first.recordsVerified).toBe(32);
    for (let i = 0; i < 10; i++) await writers[i % 2]?.finish(context(i), { status: 200 });
    const second = await runCheckpointJob(deps);
    // Per chain: the certificate, the head the last checkpoint signed, and 5 new records.
    expect(second.recordsVerified).toBe(2 * (1 + 1 + 5));
    expect(second.problemCount).toBe(0);
    expect(metrics().RecordsVerified).toEqual([32, 14]);
    const report = await verifyTable(fx.reader, { rootKeys: [fx.rootPem] });
    expect(report.ok).toBe(true);
    expect(report.unsealedRecords).toBe(0);
  });

  it('when a record since the last checkpoint is deleted, or a signed head removed, it reports the problem and the metric', async () => {
    const fx = await auditFixture('audit-job-tamper');
    const w = fx.trail();
    const logs: string[] = [];
    const deps = {
      dynamo: fx.client,
      table: fx.tables.audit,
      root: fx.root,
      cloudwatch: new CloudWatchClient({}),
      logger: jsonLogger((l) => logs.push(l)),
    };
    for (let i = 0; i < 10; i++) await w.finish(context(i), { status: 200 });
    await runCheckpointJob(deps);
    for (let i = 0; i < 10; i++) await w.finish(context(i), { status: 200 });
    let id = '';
    for await (const entry of fx.reader.chainIndex()) id = entry.chain;
    const t = tamper(fx.client, fx.tables.audit);
    await t.deleteRecord(id, 14);
    const result = await runCheckpointJob(deps);
    expect(result.problems[0]).toMatchObject({ kind: 'missing_record', chain: id, seq: 14 });
    expect(metrics().VerificationProblems).toEqual([0, 1]);
    expect(logs.join('\n')).toContain('audit verification failed');

    // The head the last checkpoint signed (record 20) disappears with everything after it.
    for (let seq = 15; seq <= 20; seq++) await t.deleteRecord(id, seq);
    const again = await runCheckpointJob(deps);
    expect(again.problems.map((p) => p.kind)).toContain('truncated');
  });

  it('when a chain has expired, it drops out of later checkpoints once a checkpoint has covered it', async () => {
    const fx = await auditFixture('audit-job-expire');
    const past = new Date(Date.now() - 3 * 3600_000);
    const old = fx.trail({ now: () => past });
    await old.finish(context(1), { status: 200 });
    const deps = { dynamo: fx.client, table: fx.tables.audit, root: fx.root };
    expect((await runCheckpointJob(deps)).checkpoint.heads).toBe(1);
    expect((await runCheckpointJob(deps)).checkpoint.heads).toBe(0);
    expect((await verifyTable(fx.reader, { rootKeys: [fx.rootPem] })).ok).toBe(true);
  });

  it('when CloudWatch refuses the metrics, the checkpoint is still written', async () => {
    cloudwatch
      .on(PutMetricDataCommand)
      .rejects(Object.assign(new Error('throttled'), { name: 'Throttling' }));
    const fx = await auditFixture('audit-job-cw');
    const logs: string[] = [];
    const result = await runCheckpointJob({
      dynamo: fx.client,
      table: fx.tables.audit,
      root: fx.root,
      cloudwatch: new CloudWatchClient({}),
      logger: jsonLogger((l) => logs.push(l)),
    });
    expect(result.checkpoint.seq).toBe(1);
    expect(logs.join('\n')).toContain('publishing audit metrics failed');
  });
});
