import { type Command, InvalidArgumentError } from 'commander';
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
      const { createIdentity } = await import('../actions/keygen.js');
      await createIdentity(io, output(program, io), opts);
    });
}
