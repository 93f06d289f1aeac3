import type { Command } from 'commander';
import type { ImportOptions } from '../actions/import.js';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/** `coffer import FILE`: writes the secrets of a bundle made for you through the API. */
export function registerImportCommand(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('import')
    .description('write the secrets of a bundle made for you (coffer export) through the API')
    .argument('<file>', 'the bundle, or - for stdin')
    .option('--identity <keyfile>', 'your age identity file (default: COFFER_AGE_IDENTITY)')
    .option(
      '--prefix <prefix>',
      'write below this folder (name below the export root) instead of the original paths',
    )
    .option('--dry-run', 'show what would be written; write nothing')
    .action(async (file: string, opts: ImportOptions) => {
      const { importSecrets } = await import('../actions/import.js');
      await importSecrets(io, output(program, io), client, file, opts);
    });
}
