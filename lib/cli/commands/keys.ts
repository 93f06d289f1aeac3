import type { Command } from 'commander';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/**
 * `coffer keys status|rotate|revert|flush|rewrap|retire`: the key hierarchy's administration
 * (docs/keys.md). Each is Cedar `admin` on the folder (the root folder `Folder::""` for root and
 * all-folder operations) and audited with the key ids involved.
 */
export function registerKeysCommands(program: Command, io: CliIo, client: ClientFactory): void {
  const keys = program
    .command('keys')
    .description('branch keys and root keys: status, rotation, re-wrap, retire');
  const run = async (operation: string, args: Record<string, unknown>) => {
    const { keysAction } = await import('../actions/keys.js');
    await keysAction(io, output(program, io), client, operation, args);
  };
  keys
    .command('status')
    .description('root and branch key versions, what they wrap, re-wrap progress, this instance’s cache')
    .action(() => run('status', {}));
  keys
    .command('rotate')
    .description('new branch key versions (all folders, or one); with --root a new root key')
    .option('--folder <folder>', 'one top-level folder')
    .option('--root', 'rotate the root key instead')
    .option('--kms-key <arn>', 'with --root in AWS: the allow-listed KMS key to move to')
    .action((opts: { folder?: string; root?: boolean; kmsKey?: string }) => run('rotate', opts));
  keys
    .command('revert')
    .description('make the previous branch key version (or root key) active again')
    .option('--folder <folder>', 'one top-level folder')
    .option('--root', 'revert the root key instead')
    .action((opts: { folder?: string; root?: boolean }) => run('revert', opts));
  keys
    .command('flush')
    .description('empty the branch key caches of every instance (within the flush bound)')
    .action(() => run('flush', {}));
  keys
    .command('rewrap')
    .description('re-wrap every data key under its folder’s active branch key (resumable)')
    .option('--folder <folder>', 'one top-level folder')
    .action((opts: { folder?: string }) => run('rewrap', opts));
  keys
    .command('retire')
    .description('retire a branch key (bk:<folder>:<n>) or root key no secret version uses any more')
    .argument('<id>', 'the key id')
    .action((id: string) => run('retire', { id }));
}
