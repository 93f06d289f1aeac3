import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  AccessDeniedException,
  CloudWatchLogsClient,
  FilterLogEventsCommand,
  type FilterLogEventsCommandInput,
  ResourceNotFoundException,
} from '@aws-sdk/client-cloudwatch-logs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../../lib/cli/main.js';
import { auditFixture, context, tamper } from '../support/audit-fixtures.js';
import { matchesFilterPattern } from '../support/cloudwatch-filter.js';

/*
 * `coffer audit verify --against-logs`: the audit table in DynamoDB Local against the records'
 * stdout copy, served by a mocked CloudWatch Logs that holds exactly the lines the trail printed.
 */

const logs = mockClient(CloudWatchLogsClient);
afterEach(() => logs.reset());

const LOG_GROUP = '/aws/lambda/coffer-api';
/** Small pages, so that every test reads the group over several FilterLogEvents calls. */
const PAGE = 7;

async function cli(args: string[], cwd: string) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    env: { COFFER_DATA_DIR: join(cwd, 'no-such-data-dir') },
    stdin: Object.assign(Readable.from([]), { isTTY: false }),
    stdout: { write: (s: string) => (stdout += s), isTTY: false },
    stderr: { write: (s: string) => (stderr += s), isTTY: false },
    cwd,
  });
  return { code, stdout, stderr };
}

/**
 * Serves `lines` as the log group does: only the events matching the request's filter pattern,
 * PAGE at a time, with a nextToken until the last page. Returns the inputs it was called with.
 */
function serveLogs(lines: readonly string[]): FilterLogEventsCommandInput[] {
  const calls: FilterLogEventsCommandInput[] = [];
  logs.on(FilterLogEventsCommand).callsFake((input: FilterLogEventsCommandInput) => {
    calls.push(input);
    if (input.logGroupName !== LOG_GROUP) {
      throw new ResourceNotFoundException({
        message: 'The specified log group does not exist.',
        $metadata: {},
      });
    }
    const matching = lines.filter((l) =>
      input.filterPattern ? matchesFilterPattern(input.filterPattern, l) : true,
    );
    const from = input.nextToken ? Number(input.nextToken.replace('page-', '')) : 0;
    const next = from + PAGE;
    return {
      events: matching.slice(from, next).map((message, i) => ({
        logStreamName: '2026/11/30/[$LATEST]abc',
        timestamp: Date.now(),
        eventId: String(from + i),
        message,
      })),
      ...(next < matching.length ? { nextToken: `page-${next}` } : {}),
    };
  });
  return calls;
}

/** A fresh audit table with two chains, a checkpoint, then an unsealed tail of four records on one chain. */
async function populate(label: string) {
  const fx = await auditFixture(label);
  const writers = [fx.trail(), fx.trail()];
  for (let i = 0; i < 12; i++) await writers[i % 2]?.finish(context(i), { status: 200 });
  await fx.checkpointer.write();
  for (let i = 12; i < 16; i++) await writers[0]?.finish(context(i), { status: 200 });
  const records = fx.lines
    .map((l) => JSON.parse(l) as { type: string; chain?: string; seq?: number; checkpointSeq?: number })
    .filter((l) => l.type !== 'checkpoint');
  const tailChain = records.at(-1)?.chain as string;
  const tailSeq = records.at(-1)?.seq as number;
  return { fx, tailChain, tailSeq, lines: [...fx.lines] };
}

describe('coffer audit verify --against-logs', () => {
  let dir: string;
  const endpoint = () => inject('dynamodbEndpoint');
  const args = (table: string) => [
    'audit',
    'verify',
    '--table',
    table,
    '--endpoint',
    endpoint(),
    '--root-key',
    'root.pem',
    '--region',
    'eu-west-1',
  ];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'coffer-audit-logs-'));
  });

  it('passes when every logged record is in the table, reading the group page by page', async () => {
    const { fx, lines } = await populate('logs-ok');
    await writeFile(join(dir, 'root.pem'), fx.rootPem);
    const calls = serveLogs(lines);
    const run = await cli([...args(fx.tables.audit), '--against-logs', LOG_GROUP], dir);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`Against logs: ${LOG_GROUP}: 18 record lines, 18 records matched`);
    expect(run.stdout).toContain('every record in the logs is in the table');
    // 18 record lines (the checkpoint line is filtered out by the pattern) in pages of 7: 3 calls.
    expect(calls.map((c) => c.nextToken)).toEqual([undefined, 'page-7', 'page-14']);
    for (const c of calls) {
      expect(c.logGroupName).toBe(LOG_GROUP);
      expect(c.filterPattern).toContain('$.audit = "coffer.v1"');
    }
    const json = await cli(['--json', ...args(fx.tables.audit), '--against-logs', LOG_GROUP], dir);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout).logs).toEqual({
      logGroup: LOG_GROUP,
      logRecords: 18,
      matched: 18,
      notInLogs: 0,
      ignoredLines: 0,
    });
  });

  it('reports records deleted from the end of a chain before the next checkpoint, which plain verify cannot see', async () => {
    const { fx, lines, tailChain, tailSeq } = await populate('logs-tail');
    await writeFile(join(dir, 'root.pem'), fx.rootPem);
    const t = tamper(fx.client, fx.tables.audit);
    await t.deleteRecord(tailChain, tailSeq);
    await t.deleteRecord(tailChain, tailSeq - 1);
    const plain = await cli(args(fx.tables.audit), dir);
    expect(plain.code, plain.stdout).toBe(0);
    serveLogs(lines);
    const run = await cli([...args(fx.tables.audit), '--against-logs', LOG_GROUP], dir);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('FAILED: 2 problems.');
    expect(run.stdout).toContain(`missing_from_table (chain ${tailChain}, record ${tailSeq - 1}, request `);
    expect(run.stdout).toContain(`missing_from_table (chain ${tailChain}, record ${tailSeq}, request `);
    expect(run.stdout).toContain('deleted from the table');
    expect(run.stderr).toContain('audit_verification_failed');
  });

  it('reports a record whose hash in the table is not the one in the logs', async () => {
    const { fx, lines, tailChain, tailSeq } = await populate('logs-edit');
    await writeFile(join(dir, 'root.pem'), fx.rootPem);
    const t = tamper(fx.client, fx.tables.audit);
    const item = await t.getRecord(tailChain, tailSeq);
    await t.put({ ...item, status: 403, hash: 'f'.repeat(64) });
    serveLogs(lines);
    const run = await cli([...args(fx.tables.audit), '--against-logs', LOG_GROUP], dir);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(`differs_from_logs (chain ${tailChain}, record ${tailSeq}`);
    expect(run.stdout).toContain('it was replaced');
  });

  it('counts table records whose lines have not reached the logs yet as lag, not a failure', async () => {
    const { fx, lines } = await populate('logs-lag');
    await writeFile(join(dir, 'root.pem'), fx.rootPem);
    serveLogs(lines.slice(0, -3));
    const run = await cli([...args(fx.tables.audit), '--against-logs', LOG_GROUP], dir);
    expect(run.code, run.stdout).toBe(0);
    expect(run.stdout).toContain('Note: 3 records of the table have no line in the logs yet');
    expect(run.stdout).toContain('OK:');
  });

  it('says so when the log group does not exist or access is denied, and refuses --file', async () => {
    const { fx, lines } = await populate('logs-errors');
    await writeFile(join(dir, 'root.pem'), fx.rootPem);
    serveLogs(lines);
    const missing = await cli([...args(fx.tables.audit), '--against-logs', '/aws/lambda/nope'], dir);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('log group /aws/lambda/nope does not exist');
    logs.reset();
    logs.on(FilterLogEventsCommand).rejects(
      new AccessDeniedException({
        message: 'User is not authorized to perform: logs:FilterLogEvents',
        $metadata: {},
      }),
    );
    const denied = await cli([...args(fx.tables.audit), '--against-logs', LOG_GROUP], dir);
    expect(denied.code).toBe(5);
    expect(denied.stderr).toContain(`AWS refused access to log group ${LOG_GROUP}`);
    const file = await cli(
      ['audit', 'verify', '--file', 'x.jsonl', '--root-key', 'root.pem', '--against-logs', LOG_GROUP],
      dir,
    );
    expect(file.code).toBe(2);
    expect(file.stderr).toContain('--against-logs compares a table with its logs');
    for (const run of [missing, denied, file]) expect(run.stderr).not.toContain('unexpected error');
  });
});
