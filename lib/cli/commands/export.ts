import type { Command } from 'commander';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { collect, output } from '../output.js';

/** `coffer export --to RECIPIENT PATH|PREFIX...`: secrets in a bundle only the recipient can open. */
export function registerExportCommand(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('export')
    .description('write secrets into an age-encrypted bundle that only the recipient can open')
    .argument('<paths...>', 'secret paths, or folder prefixes ending in "/"')
    .option('--to <recipient>', "the receiver's age recipient, age1… (repeatable)", collect)
    .option('-o, --output <file>', 'bundle file (mode 0600); default stdout when it is not a terminal')
    .option('--armor', 'ASCII-armored bundle, safe to paste into a message')
    .action(async (args: string[], given: { to?: string[]; output?: string; armor?: boolean }) => {
      // age is loaded only by the commands that seal or open bundles.
      const { exportSecrets } = await import('../actions/export.js');
      await exportSecrets(io, output(program, io), client, args, given);
    });
}
