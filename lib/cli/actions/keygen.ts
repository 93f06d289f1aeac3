import { resolve } from 'node:path';
import { newIdentity } from '../bundle.js';
import { writeFileAtomic } from '../files.js';
import type { CliIo } from '../io.js';
import type { Output } from '../output.js';

/**
 * `coffer keygen -o FILE`: a new age X25519 identity, written 0600 (never over an existing file),
 * and its recipient printed: the public half that a teammate passes to `coffer export --to`.
 */
export async function createIdentity(io: CliIo, out: Output, opts: { output: string }): Promise<void> {
  const target = resolve(io.cwd, opts.output);
  const { recipient, file } = await newIdentity();
  await writeFileAtomic(target, file, { mode: 0o600, overwrite: false });
  if (out.quiet && !out.json) {
    io.stdout.write(`${recipient}\n`);
    return;
  }
  out.result(
    `Identity written to ${opts.output} (mode 0600). Keep it private.\n` +
      `Your recipient (share it; senders use it with coffer export --to):\n${recipient}\n`,
    { recipient, identityFile: target },
  );
}
