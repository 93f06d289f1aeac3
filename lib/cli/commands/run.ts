import type { Command } from 'commander';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { collect, output } from '../output.js';

/** `coffer run -- CMD`: a command with secrets as environment variables. */
export function registerRunCommand(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('run')
    .description('run a command with secrets as environment variables (never written to disk)')
    .usage('[--prefix P]... [--map NAME=PATH]... -- CMD [ARGS...]')
    .option(
      '--prefix <prefix>',
      'every secret below this folder; the variable is the path below it, upper-cased, / . - as _ (repeatable)',
      collect,
    )
    .option('--map <NAME=PATH>', 'one secret as the variable NAME (repeatable)', collect)
    .argument('<command...>', 'the command and its arguments, after --')
    // Without `--`, the command's own options (`sh -c`, `node --version`) read as coffer's.
    .showHelpAfterError(
      'Put the command after --, e.g.: coffer run --prefix team-a/dev -- sh -c \'echo "$DB_PASSWORD"\'\n' +
        '(see coffer run --help)',
    )
    .action(async (argv: string[], opts: { prefix?: string[]; map?: string[] }) => {
      const { runWithSecrets } = await import('../actions/run.js');
      await runWithSecrets(io, output(program, io), client, argv, opts);
    });
}
