import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  BatchWriteItemCommand,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  QueryCommand,
  ScanCommand,
  type ScanCommandInput,
} from '@aws-sdk/client-dynamodb';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { DevIssuer } from '../../lib/authn/dev-issuer.js';
import { runCli } from '../../lib/cli/main.js';
import { DEFAULT_TABLES, localSettings } from '../../lib/config.js';
import { DYNAMODB_ENDPOINT_FILE, type LocalServer, startLocalServer } from '../../lib/local/server.js';
import { silentLogger } from '../../lib/log.js';
import { localDynamoClient } from '../../lib/store/dynamo-client.js';
import { freshTableNames } from '../support/dynamo.js';

/*
 * The local half of the restore runbook in docs/operations.md, step by step as a user does it:
 * the local server and its own DynamoDB Local, the CLI for every read and for `audit verify`, and
 * the copy made with nothing but DynamoDB calls (what `aws dynamodb create-table`, `scan` and
 * `batch-write-item` send). test/integration/restore.test.ts covers the same binding through a
 * composition; this one checks that the documented commands and variables are the real ones.
 */

const RESTORED = `${DEFAULT_TABLES.secrets}-restored`;

let server: LocalServer | undefined;
afterAll(async () => {
  await server?.stop();
});

async function cli(args: string[], env: Record<string, string>) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    env,
    stdin: Object.assign(Readable.from([]), { isTTY: false }),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    cwd: env.COFFER_DATA_DIR as string,
  });
  return { code, stdout, stderr };
}

/** Step 1 of the runbook: a table of the original's key shape, then every item copied into it. */
async function copyTable(endpoint: string, from: string, to: string): Promise<number> {
  const ddb = localDynamoClient(endpoint);
  try {
    const { Table } = await ddb.send(new DescribeTableCommand({ TableName: from }));
    await ddb.send(
      new CreateTableCommand({
        TableName: to,
        BillingMode: 'PAY_PER_REQUEST',
        KeySchema: Table?.KeySchema,
        AttributeDefinitions: Table?.AttributeDefinitions,
      }),
    );
    let copied = 0;
    let start: ScanCommandInput['ExclusiveStartKey'];
    do {
      const page = await ddb.send(new ScanCommand({ TableName: from, ExclusiveStartKey: start }));
      const items = page.Items ?? [];
      for (let i = 0; i < items.length; i += 25) {
        let requests = items.slice(i, i + 25).map((Item) => ({ PutRequest: { Item } }));
        while (requests.length > 0) {
          const out = await ddb.send(new BatchWriteItemCommand({ RequestItems: { [to]: requests } }));
          requests = (out.UnprocessedItems?.[to] ?? []) as typeof requests;
        }
      }
      copied += items.length;
      start = page.LastEvaluatedKey;
    } while (start);
    return copied;
  } finally {
    ddb.destroy();
  }
}

/**
 * Step 2 of the runbook: the control records (partition `CTL`) of the original table, as they are
 * now, into the copy, so revocations, policy pushes and key rings made after the restore point stay.
 */
async function copyControlRecords(endpoint: string, from: string, to: string): Promise<number> {
  const ddb = localDynamoClient(endpoint);
  try {
    const { Items = [] } = await ddb.send(
      new QueryCommand({
        TableName: from,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': { S: 'CTL' } },
        ConsistentRead: true,
      }),
    );
    for (let i = 0; i < Items.length; i += 25) {
      let requests = Items.slice(i, i + 25).map((Item) => ({ PutRequest: { Item } }));
      while (requests.length > 0) {
        const out = await ddb.send(new BatchWriteItemCommand({ RequestItems: { [to]: requests } }));
        requests = (out.UnprocessedItems?.[to] ?? []) as typeof requests;
      }
    }
    return Items.length;
  } finally {
    ddb.destroy();
  }
}

describe('the restore runbook on the local server', () => {
  it('when the server is restarted with COFFER_SECRETS_TABLE on a copied table holding the original’s control records, the CLI reads every secret, a revocation made after the copy holds, and audit verify --storage names the value changed after the copy', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-restore-e2e-'));
    server = await startLocalServer(
      { ...localSettings({ COFFER_DATA_DIR: dataDir }), port: 0 },
      silentLogger,
    );
    const env = { COFFER_DATA_DIR: dataDir, COFFER_ADDR: server.url };
    const secrets: Record<string, string> = {
      'team-a/db/password': 'restore-e2e-1',
      'team-a/api/key': 'restore-e2e-2',
      'team-b/queue/token': 'restore-e2e-3',
    };
    for (const [path, value] of Object.entries(secrets)) {
      const put = await cli(['put', path, value, '--tag', 'env=prod'], env);
      expect(put.code, put.stderr).toBe(0);
    }
    const second = await cli(['put', 'team-a/db/password', 'restore-e2e-1b'], env);
    expect(second.code, second.stderr).toBe(0);
    secrets['team-a/db/password'] = 'restore-e2e-1b';

    // 1. The copy, in the server's own DynamoDB Local (its endpoint is in the data dir).
    const endpoint = (await readFile(join(dataDir, DYNAMODB_ENDPOINT_FILE), 'utf8')).trim();
    expect(await copyTable(endpoint, DEFAULT_TABLES.secrets, RESTORED)).toBeGreaterThan(0);
    // Changes after the restore point: a value, which the copy loses (the audit log has it), and a
    // revocation, which step 2 carries over.
    const lost = await cli(['put', 'team-b/queue/token', 'written-after-the-copy'], env);
    expect(lost.code, lost.stderr).toBe(0);
    const bob = await (await DevIssuer.open(dataDir)).mint({ subject: 'bob', groups: ['admins'] });
    const revoked = await cli(['revoke', 'User::"dev:bob"', '--reason', 'left'], env);
    expect(revoked.code, revoked.stderr).toBe(0);

    // 2. The original's control records into the copy.
    expect(await copyControlRecords(endpoint, DEFAULT_TABLES.secrets, RESTORED)).toBeGreaterThan(0);

    // 3. Stop; start again on the copy with the same data dir.
    await server.stop();
    server = undefined;
    server = await startLocalServer(
      { ...localSettings({ COFFER_DATA_DIR: dataDir, COFFER_SECRETS_TABLE: RESTORED }), port: 0 },
      silentLogger,
    );
    const restored = { ...env, COFFER_ADDR: server.url, COFFER_SECRETS_TABLE: RESTORED };

    // 4. Verify: ls and reads (older versions too), then audit verify with --storage.
    const bobReads = await fetch(`${server.url}/v1/secrets/team-a/api/key`, {
      headers: { authorization: `Bearer ${bob}` },
    });
    expect(bobReads.status).toBe(403);
    const ls = await cli(['--json', 'ls', '-r'], restored);
    expect(ls.code, ls.stderr).toBe(0);
    expect(JSON.stringify(JSON.parse(ls.stdout))).toSatisfy((s: string) =>
      Object.keys(secrets).every((p) => s.includes(p)),
    );
    for (const [path, value] of Object.entries(secrets)) {
      const get = await cli(['get', path], restored);
      expect({ path, code: get.code, value: get.stdout }).toEqual({ path, code: 0, value });
    }
    const v1 = await cli(['get', 'team-a/db/password', '--version', '1'], restored);
    expect(v1.stdout).toBe('restore-e2e-1');

    const verify = await cli(['audit', 'verify'], restored);
    expect(verify.code, verify.stderr).toBe(0);
    const storage = await cli(['--json', 'audit', 'verify', '--storage'], restored);
    expect(storage.code).not.toBe(0);
    const report = JSON.parse(storage.stdout) as {
      storage: { table: string; problems: { path: string; kind: string }[] };
    };
    expect(report.storage.table).toBe(RESTORED);
    expect(report.storage.problems).toEqual([
      expect.objectContaining({ path: 'team-b/queue/token', kind: 'rolled_back' }),
    ]);

    // The restored installation keeps working: a write lands in the copy, the original is untouched.
    const after = await cli(['put', 'team-b/queue/token', 'reentered'], restored);
    expect(after.code, after.stderr).toBe(0);
    expect((await cli(['get', 'team-b/queue/token'], restored)).stdout).toBe('reentered');
    // Stopped here, not by afterAll: the next test starts a server of its own into \`server\`, and
    // this one's Java would be left running.
    await server.stop();
    server = undefined;
  }, 240_000);

  it('when a table writer deletes the revocation list a checkpoint signed and the server restarts, the start checkpoint does not sign over it: the revoked caller stays out', async () => {
    // What is tested is the server's restart, not its Java's: the run's DynamoDB Local, with
    // tables of this test's own, stays up across it (the CLI is pointed at them with --table).
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-restore-e2e-'));
    const endpoint = inject('dynamodbEndpoint');
    const tables = freshTableNames('restore-e2e');
    const start = () =>
      startLocalServer(
        {
          ...localSettings({ COFFER_DATA_DIR: dataDir, COFFER_DYNAMODB_ENDPOINT: endpoint }),
          tables,
          port: 0,
        },
        silentLogger,
        undefined,
        {
          checkpointIntervalMs: 200,
        },
      );
    server = await start();
    const env = () => ({ COFFER_DATA_DIR: dataDir, COFFER_ADDR: (server as LocalServer).url });
    expect((await cli(['put', 'team/db', 'revocation-e2e'], env())).code).toBe(0);
    const bob = await (await DevIssuer.open(dataDir)).mint({ subject: 'bob', groups: ['admins'] });
    const read = async () => {
      const res = await fetch(`${(server as LocalServer).url}/v1/secrets/team/db`, {
        headers: { authorization: `Bearer ${bob}` },
      });
      return { status: res.status, code: ((await res.json()) as { error?: { code: string } }).error?.code };
    };
    expect((await read()).status).toBe(200);
    const revoked = await cli(['revoke', 'User::"dev:bob"', '--reason', 'left'], env());
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(await read()).toEqual({ status: 403, code: 'revoked' });
    // Let an interval checkpoint sign the list's generation, then delete the list as a table writer.
    await new Promise((r) => setTimeout(r, 1_000));
    const ddb = localDynamoClient(server.dynamodbEndpoint);
    await ddb.send(
      new DeleteItemCommand({
        TableName: tables.secrets,
        Key: { pk: { S: 'CTL' }, sk: { S: 'revocations#list' } },
      }),
    );
    ddb.destroy();
    await server.stop();
    server = undefined;

    server = await start();
    // Fail closed (the list a checkpoint signed is gone), never the bundled "nobody is revoked".
    expect(await read()).toEqual({ status: 500, code: 'integrity_error' });
    const storage = await cli(
      [
        '--json',
        'audit',
        'verify',
        '--table',
        tables.audit,
        '--endpoint',
        endpoint,
        '--storage',
        '--secrets-table',
        tables.secrets,
      ],
      env(),
    );
    expect(storage.code).not.toBe(0);
    expect(JSON.parse(storage.stdout).storage.problems).toContainEqual(
      expect.objectContaining({ path: 'revocations/list', kind: 'control_rolled_back' }),
    );
    // Two server starts (each compiles the policies) on a busy machine.
  }, 120_000);
});
