import { resolve } from 'node:path';
import type { Command } from 'commander';
import { localSettings } from '../../config.js';
import type { CliIo } from '../io.js';

/**
 * `coffer policy validate` and `coffer policy test`. Both read the directory the server would
 * (`--dir`, else COFFER_POLICY_DIR, else Coffer's own policies/) and exit non-zero on any problem,
 * so CI can run them. Cedar is loaded only by these commands.
 */
export function registerPolicyCommands(program: Command, io: CliIo): void {
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
}
