import { resolve } from 'node:path';
import type { Command } from 'commander';
import { localSettings } from '../../config.js';
import { parseIntArg } from '../args.js';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';

/**
 * `coffer policy validate` and `coffer policy test`. Both read the directory the server would
 * (`--dir`, else COFFER_POLICY_DIR, else Coffer's own policies/) and exit non-zero on any problem,
 * so CI can run them. Cedar is loaded only by these commands.
 *
 * `coffer policy push|history|rollback|approve` manage the set a running server uses, through the
 * admin API (Cedar `admin` on the root folder): no redeploy.
 */
export function registerPolicyCommands(program: Command, io: CliIo, client: ClientFactory): void {
  const json = () => program.opts<{ json?: boolean }>().json === true;
  const dirOf = (opts: { dir?: string }) =>
    opts.dir ? resolve(io.cwd, opts.dir) : localSettings(io.env, io.cwd).policyDir;
  const policy = program.command('policy').description('check the Cedar policies');

  policy
    .command('validate')
    .description('parse the schema and policies and validate them against the schema (and the examples/)')
    .option('--dir <dir>', 'policy directory (default: COFFER_POLICY_DIR, else the bundled policies/)')
    .action(async (opts: { dir?: string }) => {
      const dir = dirOf(opts);
      await (await import('../actions/policy.js')).validatePolicies(io, dir, json());
    });

  policy
    .command('test')
    .description(
      'run the decision tables in <dir>/tests (principal, action, resource, context -> allow/deny)',
    )
    .option('--dir <dir>', 'policy directory (default: COFFER_POLICY_DIR, else the bundled policies/)')
    .action(async (opts: { dir?: string }) => {
      const dir = dirOf(opts);
      await (await import('../actions/policy.js')).testPolicies(io, dir, json());
    });

  policy
    .command('push')
    .description('send the *.cedar files of a directory to the server, which validates and activates them')
    .option('--dir <dir>', 'policy directory (default: COFFER_POLICY_DIR, else the bundled policies/)')
    .option('--comment <text>', 'a note kept with the version (e.g. the commit id)')
    .action(async (opts: { dir?: string; comment?: string }) => {
      const dir = dirOf(opts);
      await (await import('../actions/control.js')).pushPolicies(
        program,
        io,
        await client(),
        dir,
        opts.comment,
      );
    });

  policy
    .command('history')
    .description('pushed versions: who pushed them, when, their hash; the active one marked')
    .action(async () => {
      await (await import('../actions/control.js')).policyHistory(program, io, await client());
    });

  const version = parseIntArg('version', 1, 1_000_000_000);
  policy
    .command('rollback')
    .description('reactivate an earlier version (as a new version)')
    .argument('<version>', 'version number, as `coffer policy history` shows it', version)
    .action(async (n: number) => {
      await (await import('../actions/control.js')).rollbackPolicies(program, io, await client(), n);
    });

  policy
    .command('approve')
    .description("activate a pending push or rollback (approvals required; another admin's)")
    .argument('<version>', 'the pending version', version)
    .action(async (n: number) => {
      await (await import('../actions/control.js')).approvePolicies(program, io, await client(), n);
    });
}
