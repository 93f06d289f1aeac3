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
    .option('--field <name>', 'one field of a JSON value (json, keypair, certificate)')
    .action(async (path: string, opts: { version?: number; field?: string }) => {
      const secret = await (await client()).get(
        path,
        opts.version !== undefined ? { version: opts.version } : {},
      );
      // Loaded here, not at start-up: `coffer --version` loads no SDK code.
      const { secretBytes, secretField } = await import('../../../packages/client/src/values.js');
      const json = output(program, io).json;
      if (opts.field !== undefined) {
        const value = secretField(secret, opts.field);
        if (json)
          io.stdout.write(
            `${JSON.stringify({ path: secret.path, version: secret.version, field: opts.field, value }, null, 2)}\n`,
          );
        else io.stdout.write(io.stdout.isTTY ? `${value}\n` : value);
      } else if (json) io.stdout.write(`${JSON.stringify(secret, null, 2)}\n`);
      // A binary value's bytes go out exactly as stored, to a pipe or a terminal alike.
      else if (secret.value === undefined) io.stdout.write(secretBytes(secret));
      // A pipe gets the value's bytes exactly; a terminal gets a newline after it.
      else io.stdout.write(io.stdout.isTTY ? `${secret.value}\n` : secret.value);
    });
}
