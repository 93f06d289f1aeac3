import type { Command } from 'commander';
import { RECOVERY_DAYS, VERSION_MAX } from '../../../packages/client/src/contract.js';
import { parseIntArg } from '../args.js';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/** `coffer rm`, `restore` and `destroy`: soft delete, undo it, and erase versions for good. */
export function registerLifecycleCommands(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('rm')
    .description('soft-delete a secret (restorable during its recovery window)')
    .argument('<path>', 'secret path')
    .option(
      '--recovery-days <n>',
      `recovery window in days (${RECOVERY_DAYS.min}-${RECOVERY_DAYS.max}, default ${RECOVERY_DAYS.default})`,
      parseIntArg('recovery-days', RECOVERY_DAYS.min, RECOVERY_DAYS.max),
    )
    .action(async (path: string, opts: { recoveryDays?: number }) => {
      const result = await (await client()).delete(
        path,
        opts.recoveryDays !== undefined ? { recoveryDays: opts.recoveryDays } : {},
      );
      output(program, io).result(`${result.path}: deleted; restorable until ${result.purgeAt}\n`, result);
    });

  program
    .command('restore')
    .description('undo a soft delete within its recovery window')
    .argument('<path>', 'secret path')
    .action(async (path: string) => {
      const result = await (await client()).restore(path);
      output(program, io).result(`${result.path}: restored (version ${result.version})\n`, result);
    });

  program
    .command('purge')
    .description('remove a soft-deleted secret now, so its path can be reused (needs admin)')
    .argument('<path>', 'secret path')
    .action(async (path: string) => {
      const result = await (await client()).purge(path);
      output(program, io).result(`${result.path}: purged\n`, result);
    });

  program
    .command('destroy')
    .description('irreversibly erase versions of a secret')
    .argument('<path>', 'secret path')
    .requiredOption('--versions <list>', 'comma-separated versions, e.g. 1,2')
    .action(async (path: string, opts: { versions: string }) => {
      const versions = opts.versions.split(',').map((v) => parseIntArg('version', 1, VERSION_MAX)(v.trim()));
      const result = await (await client()).destroy(path, versions);
      output(program, io).result(`${result.path}: destroyed ${result.destroyed.join(', ')}\n`, result);
    });
}
