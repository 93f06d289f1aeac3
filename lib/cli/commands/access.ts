import { type Command, Option } from 'commander';
import { ACCESS_WHO_ACTIONS } from '../../../packages/client/src/contract.js';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';

/**
 * `coffer access what PRINCIPAL` and `coffer access who PATH`: the access reports (docs/access.md).
 * Both ask the server, which decides with its own policies (Cedar `admin` on the folder covered).
 */
export function registerAccessCommands(program: Command, io: CliIo, client: ClientFactory): void {
  const access = program.command('access').description('who may do what: access reports (needs admin)');

  access
    .command('what')
    .description('the secrets and folders a principal may read, write or list')
    .argument('<principal>', 'an id the server has seen (corp:alice), or Type::"id" (User, Role, Workload)')
    .option(
      '--groups <list>',
      "comma-separated groups to evaluate with instead of the principal's last-seen ones",
    )
    .option('--prefix <prefix>', 'only secrets under this prefix (admin on its folder is enough)', '')
    .action(async (principal: string, opts: { groups?: string; prefix: string }) => {
      await (await import('../actions/access.js')).accessWhat(program, io, await client(), principal, opts);
    });

  access
    .command('who')
    .description('the groups and known principals who may act on a secret')
    .argument('<path>', 'secret path')
    .addOption(
      new Option('--action <action>', 'the action asked about')
        .choices([...ACCESS_WHO_ACTIONS])
        .default('read'),
    )
    .action(async (path: string, opts: { action: (typeof ACCESS_WHO_ACTIONS)[number] }) => {
      await (await import('../actions/access.js')).accessWho(program, io, await client(), path, opts.action);
    });
}
