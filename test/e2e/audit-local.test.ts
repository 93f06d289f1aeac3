import { access, mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { DeleteItemCommand } from '@aws-sdk/client-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { recordKey } from '../../lib/audit/keys.js';
import { runCli } from '../../lib/cli/main.js';
import { localSettings } from '../../lib/config.js';
import { DYNAMODB_ENDPOINT_FILE, type LocalServer, startLocalServer } from '../../lib/local/server.js';
import { type Logger, silentLogger } from '../../lib/log.js';
import { localDynamoClient } from '../../lib/store/dynamo-client.js';
import { freshTableNames } from '../support/dynamo.js';

async function cli(args: string[], dataDir: string) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    env: { COFFER_DATA_DIR: dataDir },
    stdin: Object.assign(Readable.from([]), { isTTY: false }),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    cwd: dataDir,
  });
  return { code, stdout, stderr };
}

let server: LocalServer | undefined;
afterAll(async () => {
  await server?.stop();
});

describe('the local server keeps a verifiable audit log', () => {
  it('writes records and checkpoints (on an interval and at shutdown); coffer audit verify checks them, running or not', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-audit-e2e-'));
    const lines: string[] = [];
    server = await startLocalServer(
      { ...localSettings({ COFFER_DATA_DIR: dataDir }), port: 0 },
      silentLogger,
      undefined,
      {
        auditSink: (l) => lines.push(l),
        checkpointIntervalMs: 300,
      },
    );
    const token = (await readFile(server.tokenFile, 'utf8')).trim();
    const canary = `CANARY-${crypto.randomUUID()}`;
    const call = (method: string, path: string, body?: unknown) =>
      fetch(`${server?.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    expect((await call('PUT', '/v1/secrets/e2e/audit', { value: canary })).status).toBe(200);
    await Promise.all(
      Array.from({ length: 12 }, () => call('GET', '/v1/secrets/e2e/audit').then((r) => r.text())),
    );
    await new Promise((r) => setTimeout(r, 800));

    const running = await cli(['audit', 'verify'], dataDir);
    expect(running.code, running.stderr).toBe(0);
    expect(running.stdout).toContain('OK:');
    const tail = await cli(['--json', 'audit', 'tail', '-n', '3'], dataDir);
    expect(tail.stdout.trim().split('\n')).toHaveLength(3);

    await server.stop();
    server = undefined;
    await expect(access(join(dataDir, DYNAMODB_ENDPOINT_FILE))).rejects.toThrow();
    // A server that died without cleaning up leaves a dead endpoint behind: the CLI does not use it.
    await writeFile(join(dataDir, DYNAMODB_ENDPOINT_FILE), 'http://127.0.0.1:9\n');
    const stopped = await cli(['--json', 'audit', 'verify'], dataDir);
    expect(stopped.code, stopped.stderr).toBe(0);
    const report = JSON.parse(stopped.stdout);
    expect(report).toMatchObject({ ok: true, unsealedRecords: 0 });
    // Start + at least one interval + shutdown.
    expect(report.checkpoints).toBeGreaterThanOrEqual(3);

    const parsed = lines.map((l) => JSON.parse(l));
    expect(parsed.filter((l) => l.type === 'request')).toHaveLength(13);
    expect(parsed.some((l) => l.type === 'checkpoint')).toBe(true);
    expect(lines.join('\n')).not.toContain(canary);
    for (const file of ['keys/audit-root.pem', 'keys/audit-hmac.key']) {
      expect(((await stat(join(dataDir, file))).mode & 0o777).toString(8)).toBe('600');
    }
  }, 180_000);

  it("when a chain's newest records are removed from the table between checkpoints, the server's next checkpoint signs what it wrote: verify says truncated", async () => {
    // What is tested is the server's own checkpoint, not its Java: the run's DynamoDB Local, with
    // tables of this test's own, which the CLI reads with --table (the test above covers the data
    // dir's own table, running or not).
    const dataDir = await mkdtemp(join(tmpdir(), 'coffer-audit-e2e-'));
    const endpoint = inject('dynamodbEndpoint');
    const tables = freshTableNames('audit-e2e');
    const verify = () => cli(['audit', 'verify', '--table', tables.audit, '--endpoint', endpoint], dataDir);
    const lines: string[] = [];
    const errors: { message: string; fields?: Record<string, unknown> }[] = [];
    const logger: Logger = { ...silentLogger, error: (message, fields) => errors.push({ message, fields }) };
    server = await startLocalServer(
      {
        ...localSettings({ COFFER_DATA_DIR: dataDir, COFFER_DYNAMODB_ENDPOINT: endpoint }),
        tables,
        port: 0,
      },
      logger,
      undefined,
      {
        auditSink: (l) => lines.push(l),
        checkpointIntervalMs: 10 * 60_000,
      },
    );
    const token = (await readFile(server.tokenFile, 'utf8')).trim();
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${server.url}/v1/whoami`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
    }
    // Sequential requests all go to one chain; remove its two newest records by hand, as someone
    // with table rights could, before any checkpoint covers them.
    const requests = lines.map((l) => JSON.parse(l)).filter((l) => l.type === 'request');
    const chain = requests[requests.length - 1].chain as string;
    const last = Math.max(...requests.filter((r) => r.chain === chain).map((r) => r.seq as number));
    const ddb = localDynamoClient(server.dynamodbEndpoint);
    for (const seq of [last, last - 1]) {
      await ddb.send(
        new DeleteItemCommand({ TableName: tables.audit, Key: marshall(recordKey(chain, seq)) }),
      );
    }
    ddb.destroy();
    // Without the server's own knowledge, the table alone still looks whole.
    const before = await verify();
    expect(before.code, before.stderr).toBe(0);

    await server.stop();
    server = undefined;
    expect(errors).toContainEqual({
      message: 'audit chain is shorter in the table than written',
      fields: { chain, writtenSeq: last, tableSeq: last - 2 },
    });
    const after = await verify();
    expect(after.code).toBe(1);
    expect(after.stdout).toContain(`truncated (chain ${chain}, record ${last - 1})`);
    // A server start (policies compiled) on a busy machine.
  }, 60_000);
});
