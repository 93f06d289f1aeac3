import { type Command, InvalidArgumentError, Option } from 'commander';
import { parseDuration } from '../args.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/** `coffer token`: a token from the local data dir's dev issuer, for scripts and other users. */
export function registerTokenCommand(program: Command, io: CliIo): void {
  program
    .command('token')
    .description("mint a token from the local data dir's dev issuer (prints the token alone)")
    .requiredOption('--sub <id>', 'subject')
    .option('--groups <list>', 'comma-separated groups', '')
    .addOption(
      new Option('--ttl <duration>', 'lifetime, e.g. 1h (default 1h, at most 30d)').argParser(parseDuration),
    )
    .action(async (opts: { sub: string; groups: string; ttl?: number }) => {
      if (!/^[A-Za-z0-9._@:-]{1,128}$/.test(opts.sub)) {
        throw new InvalidArgumentError('--sub must be 1-128 characters of A-Z a-z 0-9 . _ @ : -');
      }
      const groups = opts.groups
        .split(',')
        .map((g) => g.trim())
        .filter(Boolean);
      for (const g of groups) {
        if (!/^[A-Za-z0-9._-]{1,64}$/.test(g))
          throw new InvalidArgumentError(`invalid group name "${g.slice(0, 64)}"`);
      }
      // The signer (jose) is loaded only to mint.
      const [{ DevIssuer }, { localSettings }] = await Promise.all([
        import('../../authn/dev-issuer.js'),
        import('../../config.js'),
      ]);
      const issuer = await DevIssuer.open(localSettings(io.env, io.cwd).dataDir, { create: false });
      const token = await issuer.mint({ subject: opts.sub, groups, ttlSeconds: opts.ttl ?? 3600 });
      if (output(program, io).json) io.stdout.write(`${JSON.stringify({ token })}\n`);
      else io.stdout.write(`${token}\n`);
    });
}
