import { describe, expect, it } from 'vitest';
import {
  AUDIT_RECORD_FILTER_PATTERN,
  compareWithLogs,
  parseLogLine,
  type RecordRef,
} from '../../lib/audit/logs-compare.js';
import type { Problem } from '../../lib/audit/verify-problems.js';
import { matchesFilterPattern } from '../support/cloudwatch-filter.js';

/* The table against the CloudWatch Logs copy: what is deleted or replaced, and what is only lag. */

const ref = (chain: string, seq: number, hash = `h-${chain}-${seq}`): RecordRef => ({ chain, seq, hash });

/** A log line as logLine (record.ts) writes one, with the fields the comparison reads. */
const line = (r: RecordRef, type: 'request' | 'chain-start' = r.seq === 0 ? 'chain-start' : 'request') =>
  JSON.stringify({
    audit: 'coffer.v1',
    type,
    time: '2026-11-30T10:00:00.000Z',
    ...(type === 'request' ? { requestId: `req-${r.chain}-${r.seq}` } : {}),
    chain: r.chain,
    seq: r.seq,
    hash: r.hash,
  });

async function compare(logs: readonly string[], table: readonly RecordRef[]) {
  const problems: Problem[] = [];
  const result = await compareWithLogs(logs, table, (p) => problems.push(p));
  return { problems, result };
}

const chainA = [0, 1, 2, 3, 4, 5].map((s) => ref('A', s));
const chainB = [0, 1, 2].map((s) => ref('B', s));

describe('the audit table against its CloudWatch Logs copy', () => {
  it('passes when both hold the same records', async () => {
    const { problems, result } = await compare(
      [...chainA, ...chainB].map((r) => line(r)),
      [...chainA, ...chainB],
    );
    expect(problems).toEqual([]);
    expect(result).toEqual({ logRecords: 9, matched: 9, notInLogs: 0, ignoredLines: 0 });
  });

  it('reports records deleted from the end of a chain, in order, with their request ids', async () => {
    const { problems } = await compare(
      [...chainA, ...chainB].map((r) => line(r)),
      [...chainA.slice(0, 4), ...chainB],
    );
    expect(problems.map((p) => [p.kind, p.chain, p.seq, p.requestId])).toEqual([
      ['missing_from_table', 'A', 4, 'req-A-4'],
      ['missing_from_table', 'A', 5, 'req-A-5'],
    ]);
    expect(problems[0]?.message).toContain('deleted from the table');
  });

  it('reports a whole chain that is gone from the table', async () => {
    const { problems } = await compare(
      [...chainA, ...chainB].map((r) => line(r)),
      chainA,
    );
    expect(problems.map((p) => `${p.kind} ${p.chain}/${p.seq}`)).toEqual([
      'missing_from_table B/0',
      'missing_from_table B/1',
      'missing_from_table B/2',
    ]);
  });

  it('reports a record whose hash differs between the table and the logs', async () => {
    const edited = chainA.map((r) => (r.seq === 2 ? ref('A', 2, 'rehashed') : r));
    const { problems, result } = await compare(
      chainA.map((r) => line(r)),
      edited,
    );
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({
      kind: 'differs_from_logs',
      chain: 'A',
      seq: 2,
      requestId: 'req-A-2',
    });
    expect(result.matched).toBe(6);
  });

  it('counts table records without a line as lag, not as a problem', async () => {
    const { problems, result } = await compare(
      chainA.slice(0, 3).map((r) => line(r)),
      [...chainA, ...chainB],
    );
    expect(problems).toEqual([]);
    expect(result).toMatchObject({ matched: 3, notInLogs: 6 });
  });

  it('ignores what is not a record line: checkpoints, operational output, broken JSON', async () => {
    const other = [
      JSON.stringify({ audit: 'coffer.v1', type: 'checkpoint', checkpointSeq: 3, sig: 'x' }),
      JSON.stringify({ level: 'info', msg: 'listening' }),
      '{"audit":"coffer.v1","type":"request",',
      'START RequestId: 1234 Version: $LATEST',
      JSON.stringify({ audit: 'coffer.v1', type: 'request', chain: 'A', seq: -1, hash: 'x' }),
      JSON.stringify({ audit: 'coffer.v1', type: 'request', chain: 'A', seq: '1', hash: 'x' }),
    ];
    const { problems, result } = await compare([...other, ...chainA.map((r) => line(r))], chainA);
    expect(problems).toEqual([]);
    expect(result).toEqual({ logRecords: 6, matched: 6, notInLogs: 0, ignoredLines: 6 });
  });

  it('finds a line after a text prefix the Lambda runtime may add', () => {
    expect(parseLogLine(`2026-11-30T10:00:00Z\tabc\tINFO\t${line(ref('A', 1))}`)).toEqual({
      chain: 'A',
      seq: 1,
      hash: 'h-A-1',
      requestId: 'req-A-1',
    });
  });

  it('reports each hash the logs hold for one position when they disagree with the table', async () => {
    const logs = [line(ref('A', 1, 'first')), line(ref('A', 1, 'second'))];
    const { problems } = await compare(logs, [ref('A', 1, 'first')]);
    expect(problems.map((p) => p.kind)).toEqual(['differs_from_logs']);
    expect(problems[0]?.message).toContain('second');
  });

  it('asks CloudWatch Logs for record lines only', () => {
    expect(matchesFilterPattern(AUDIT_RECORD_FILTER_PATTERN, line(ref('A', 0)))).toBe(true);
    expect(matchesFilterPattern(AUDIT_RECORD_FILTER_PATTERN, line(ref('A', 1)))).toBe(true);
    const checkpoint = JSON.stringify({ audit: 'coffer.v1', type: 'checkpoint', checkpointSeq: 1 });
    expect(matchesFilterPattern(AUDIT_RECORD_FILTER_PATTERN, checkpoint)).toBe(false);
    expect(matchesFilterPattern(AUDIT_RECORD_FILTER_PATTERN, JSON.stringify({ msg: 'x' }))).toBe(false);
  });
});
