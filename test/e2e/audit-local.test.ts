import { access, mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../lib/cli/main.js';
import { localSettings } from '../../lib/config.js';
import { DYNAMODB_ENDPOINT_FILE, type LocalServer, startLocalServer } from '../../lib/local/server.js';
import { silentLogger } from '../../lib/log.js';

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
  });
});
