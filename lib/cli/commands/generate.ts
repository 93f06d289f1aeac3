import { type Command, Option } from 'commander';
import {
  GENERATED_TYPES,
  KEY_ALGORITHMS,
  PASSWORD_CLASS_NAMES,
  PASSWORD_LENGTH,
  VALIDITY_DAYS,
  VERSION_MAX,
} from '../../../packages/client/src/contract.js';
import { parseIntArg } from '../args.js';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { collect, output } from '../output.js';

/** The options of `coffer generate`, as commander parses them. */
export interface GenerateOptions {
  type: (typeof GENERATED_TYPES)[number];
  length?: number;
  classes?: string;
  exclude?: string;
  algorithm?: (typeof KEY_ALGORITHMS)[number];
  cn?: string;
  org?: string;
  ou?: string;
  dns?: string[];
  ip?: string[];
  uri?: string[];
  email?: string[];
  validityDays?: number;
  ca?: boolean;
  issuer?: string;
  allowedName?: string[];
  maxValidityDays?: number;
  cas?: number;
  description?: string;
  tag?: string[];
}

/**
 * `coffer generate PATH --type T ...`: the server generates a password, a key pair or a
 * certificate and stores it as a new version; only its metadata is printed, never the value.
 */
export function registerGenerateCommand(program: Command, io: CliIo, client: ClientFactory): void {
  const days = (name: string) => parseIntArg(name, VALIDITY_DAYS.min, VALIDITY_DAYS.max);
  program
    .command('generate')
    .description('generate a password, key pair or certificate on the server (the value is never printed)')
    .argument('<path>', 'secret path, e.g. team-a/db/password')
    .addOption(new Option('--type <type>', 'what to generate').choices(GENERATED_TYPES).makeOptionMandatory())
    .option(
      '--length <n>',
      `password length (${PASSWORD_LENGTH.min}-${PASSWORD_LENGTH.max}, default ${PASSWORD_LENGTH.default})`,
      parseIntArg('length', PASSWORD_LENGTH.min, PASSWORD_LENGTH.max),
    )
    .option(
      '--classes <list>',
      `password character classes, comma-separated (${PASSWORD_CLASS_NAMES.join(',')})`,
    )
    .option('--exclude <chars>', 'characters a password never uses (e.g. look-alikes O0Il1)')
    .addOption(
      new Option(
        '--algorithm <alg>',
        'key algorithm (keypair: required; certificate: default ecdsa-p256)',
      ).choices(KEY_ALGORITHMS),
    )
    .option('--cn <name>', "certificate subject's common name")
    .option('--org <name>', "certificate subject's organization")
    .option('--ou <name>', "certificate subject's organizational unit")
    .option('--dns <name>', 'DNS name SAN (repeatable)', collect)
    .option('--ip <address>', 'IP address SAN (repeatable)', collect)
    .option('--uri <uri>', 'URI SAN (repeatable)', collect)
    .option('--email <address>', 'email SAN (repeatable)', collect)
    .option(
      '--validity-days <n>',
      `certificate validity (${VALIDITY_DAYS.min}-${VALIDITY_DAYS.max} days)`,
      days('validity-days'),
    )
    .option('--ca', 'a CA certificate (self-signed unless --issuer)')
    .option('--issuer <path>', 'the CA certificate secret that issues it (Cedar action issue on it)')
    .option(
      '--allowed-name <pattern>',
      'CA: a name pattern its certificates may use, * = one label (repeatable)',
      collect,
    )
    .option('--max-validity-days <n>', 'CA: the longest validity it issues', days('max-validity-days'))
    .option(
      '--cas <version>',
      'only write if the latest version is this (0 = only if absent)',
      parseIntArg('cas', 0, VERSION_MAX),
    )
    .option('--description <text>', 'description of the secret')
    .option('--tag <key=value...>', 'tags (replace the current tags)')
    .action(async (path: string, opts: GenerateOptions) => {
      const { generate } = await import('../actions/generate.js');
      await generate(output(program, io), client, path, opts);
    });
}
