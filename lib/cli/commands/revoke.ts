import type { Command } from 'commander';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';

/**
 * `coffer revoke` and `coffer revocations ls|rm`: the revocation list (Cedar `admin` on the root
 * folder). A revocation applies on every instance within 10 s, before any policy.
 */
export function registerRevokeCommands(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('revoke')
    .description(
      'deny every request of a principal (or a group), before any policy, on every instance within 10 s',
    )
    .argument(
      '[principal]',
      'entity id: User::"corp:alice", Role::"arn:…", Workload::"cert:…", or a bare id (any type)',
    )
    .option('--group <group>', 'revoke every member of this Coffer group instead')
    .option('--reason <text>', 'why (kept in the list and the audit log; no secrets)')
    .option('--until <time>', 'ISO 8601 time, or a duration from now (90m, 12h, 7d), after which it lapses')
    .option(
      '--tokens-issued-before <time>',
      'refuse only credentials issued before this ISO 8601 time (or "now"): a fresh login works',
    )
    .action(async (principal: string | undefined, opts: RevokeOptions) => {
      await (await import('../actions/control.js')).revoke(program, io, await client(), principal, opts);
    });

  const revocations = program.command('revocations').description('list or remove revocations');
  revocations
    .command('ls')
    .description('the revocation list (expired entries marked)')
    .action(async () => {
      await (await import('../actions/control.js')).listRevocations(program, io, await client());
    });
  revocations
    .command('rm')
    .description('remove a revocation by its id (r-…): access comes back within 10 s')
    .argument('<id>', 'revocation id, as `coffer revocations ls` shows it')
    .action(async (id: string) => {
      await (await import('../actions/control.js')).removeRevocation(program, io, await client(), id);
    });
}

export interface RevokeOptions {
  readonly group?: string;
  readonly reason?: string;
  readonly until?: string;
  readonly tokensIssuedBefore?: string;
}
