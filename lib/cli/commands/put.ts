import type { Command } from 'commander';
import { VERSION_MAX } from '../../../packages/client/src/contract.js';
import { parseIntArg, parseTags } from '../args.js';
import type { ClientFactory } from '../credentials.js';
import { readSecretInput } from '../input.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/** `coffer put PATH [VALUE|-]`: writes a new version of a secret. */
export function registerPutCommand(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('put')
    .description('write a new version of a secret (value from the argument, stdin with "-", or a prompt)')
    .argument('<path>', 'secret path, e.g. team-a/db/password')
    .argument('[value]', 'the value, or "-" to read it from stdin (prefer stdin: arguments show in ps)')
    .option(
      '--cas <version>',
      'only write if the latest version is this (0 = only if absent)',
      parseIntArg('cas', 0, VERSION_MAX),
    )
    .option('--description <text>', 'description of the secret')
    .option('--tag <key=value...>', 'tags (replace the current tags)')
    .action(
      async (
        path: string,
        value: string | undefined,
        opts: { cas?: number; description?: string; tag?: string[] },
      ) => {
        const secret = await readSecretInput(value, io);
        const tags = opts.tag ? parseTags(opts.tag) : undefined;
        const result = await (await client()).put(path, secret, {
          ...(opts.cas !== undefined ? { cas: opts.cas } : {}),
          ...(opts.description !== undefined ? { description: opts.description } : {}),
          ...(tags ? { tags } : {}),
        });
        output(program, io).result(`${result.path}: version ${result.version}\n`, result);
      },
    );
}
