import type { Command } from 'commander';
import { VERSION_MAX } from '../../../packages/client/src/contract.js';
import { parseIntArg } from '../args.js';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/** `coffer get PATH`: prints a secret's value. */
export function registerGetCommand(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('get')
    .description('print a secret value')
    .argument('<path>', 'secret path')
    .option('--version <n>', 'a specific version', parseIntArg('version', 1, VERSION_MAX))
    .action(async (path: string, opts: { version?: number }) => {
      const secret = await (await client()).get(
        path,
        opts.version !== undefined ? { version: opts.version } : {},
      );
      if (output(program, io).json) io.stdout.write(`${JSON.stringify(secret, null, 2)}\n`);
      // A pipe gets the value's bytes exactly; a terminal gets a newline after it.
      else io.stdout.write(io.stdout.isTTY ? `${secret.value}\n` : secret.value);
    });
}
