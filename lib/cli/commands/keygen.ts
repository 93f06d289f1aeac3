import { resolve } from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { newIdentity } from '../bundle.js';
import { writeFileAtomic } from '../files.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/**
 * `coffer keygen -o FILE`: a new age X25519 identity, written 0600 (never over an existing file),
 * and its recipient printed: the public half that a teammate passes to `coffer export --to`.
 */
export function registerKeygenCommand(program: Command, io: CliIo): void {
  program
    .command('keygen')
    .description('create an age identity (0600) to receive bundles; prints its recipient (public key)')
    .requiredOption('-o, --output <file>', 'identity file to create (never overwritten)')
    .action(async (opts: { output: string }) => {
      // A private key belongs in a 0600 file, not in a terminal's scrollback or a pipe.
      if (opts.output === '-') {
        throw new InvalidArgumentError(
          'keygen writes the identity to a file (mode 0600): give -o FILE, not -',
        );
      }
      const out = output(program, io);
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
    });
}
