import { type Command, InvalidArgumentError } from 'commander';
import {
  isSecretType,
  SECRET_TYPES,
  type SecretType,
  VERSION_MAX,
} from '../../../packages/client/src/contract.js';
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
    .option(
      '--type <type>',
      `the secret's type: ${SECRET_TYPES.join(', ')} (default: keep the secret's; stdin that is not UTF-8 is binary)`,
      (raw: string): SecretType => {
        if (!isSecretType(raw)) throw new InvalidArgumentError(`must be one of ${SECRET_TYPES.join(', ')}`);
        return raw;
      },
    )
    .option('--description <text>', 'description of the secret')
    .option('--tag <key=value...>', 'tags (replace the current tags)')
    .action(
      async (
        path: string,
        value: string | undefined,
        opts: { cas?: number; type?: SecretType; description?: string; tag?: string[] },
      ) => {
        const input = await readSecretInput(value, io);
        // Bytes that are not UTF-8 are stored as they are, as a binary secret; a binary secret
        // asked for is sent as bytes too, so that nothing on the way re-encodes it.
        const bytes = typeof input !== 'string' || opts.type === 'binary';
        const secret = bytes && typeof input === 'string' ? new TextEncoder().encode(input) : input;
        const type = opts.type ?? (typeof input === 'string' ? undefined : 'binary');
        const tags = opts.tag ? parseTags(opts.tag) : undefined;
        const result = await (await client()).put(path, secret, {
          ...(type !== undefined ? { type } : {}),
          ...(opts.cas !== undefined ? { cas: opts.cas } : {}),
          ...(opts.description !== undefined ? { description: opts.description } : {}),
          ...(tags ? { tags } : {}),
        });
        output(program, io).result(`${result.path}: version ${result.version}\n`, result);
      },
    );
}
