import type { Command } from 'commander';
import type { ImportOptions } from '../actions/import.js';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { collect, output } from '../output.js';

/**
 * `coffer backup [PREFIX]` and `coffer restore-backup FILE`: the bundle format of export/import
 * for a whole prefix, with each secret's description and tags. A backup holds the latest version
 * of each secret the caller can list and read; restoring writes them as new versions.
 */
export function registerBackupCommands(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('backup')
    .description('an age-encrypted bundle of every secret below a prefix (latest values, descriptions, tags)')
    .argument('[prefix]', 'folder to back up (default: everything you can list)')
    .option('--to <recipient>', "the backup key's age recipient, age1… (repeatable)", collect)
    .option('-o, --output <file>', 'bundle file (mode 0600); default stdout when it is not a terminal')
    .option('--armor', 'ASCII-armored bundle')
    .action(
      async (rawPrefix: string | undefined, given: { to?: string[]; output?: string; armor?: boolean }) => {
        const { backupSecrets } = await import('../actions/backup.js');
        await backupSecrets(io, output(program, io), client, rawPrefix, given);
      },
    );

  program
    .command('restore-backup')
    .description('write the secrets of a backup bundle back through the API')
    .argument('<file>', 'the backup bundle, or - for stdin')
    .option('--identity <keyfile>', 'the backup identity file (default: COFFER_AGE_IDENTITY)')
    .option('--prefix <prefix>', 'restore below this folder instead of the original paths')
    .option('--dry-run', 'show what would be written; write nothing')
    .action(async (file: string, opts: ImportOptions) => {
      const { restoreBackup } = await import('../actions/backup.js');
      await restoreBackup(io, output(program, io), client, file, opts);
    });
}
