import { InvalidArgumentError } from 'commander';
import {
  type GenerateRequest,
  type GenerateResult,
  PASSWORD_CLASS_NAMES,
  type PasswordClass,
} from '../../../packages/client/src/contract.js';
import { parseTags } from '../args.js';
import type { GenerateOptions } from '../commands/generate.js';
import type { ClientFactory } from '../credentials.js';
import type { Output } from '../output.js';

/** Options that belong to one type only: given with another, they would be silently ignored. */
const ONLY_FOR: Record<string, readonly GenerateOptions['type'][]> = {
  length: ['password'],
  classes: ['password'],
  exclude: ['password'],
  algorithm: ['keypair', 'certificate'],
  cn: ['certificate'],
  org: ['certificate'],
  ou: ['certificate'],
  dns: ['certificate'],
  ip: ['certificate'],
  uri: ['certificate'],
  email: ['certificate'],
  validityDays: ['certificate'],
  ca: ['certificate'],
  issuer: ['certificate'],
  allowedName: ['certificate'],
  maxValidityDays: ['certificate'],
};

const flag = (name: string) => `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** The request body of `coffer generate`'s options; a misplaced or missing option is a usage error. */
export function generateRequest(opts: GenerateOptions): GenerateRequest {
  for (const [name, types] of Object.entries(ONLY_FOR)) {
    if (opts[name as keyof GenerateOptions] !== undefined && !types.includes(opts.type)) {
      throw new InvalidArgumentError(`${flag(name)} does not apply to --type ${opts.type}`);
    }
  }
  const common = {
    ...(opts.cas !== undefined ? { cas: opts.cas } : {}),
    ...(opts.description !== undefined ? { description: opts.description } : {}),
    ...(opts.tag ? { tags: parseTags(opts.tag) } : {}),
  };
  switch (opts.type) {
    case 'password': {
      const classes = opts.classes?.split(',').map((c) => c.trim());
      for (const c of classes ?? []) {
        if (!(PASSWORD_CLASS_NAMES as readonly string[]).includes(c)) {
          throw new InvalidArgumentError(
            `--classes: "${c}" is not one of ${PASSWORD_CLASS_NAMES.join(', ')}`,
          );
        }
      }
      return {
        type: 'password',
        ...(opts.length !== undefined ? { length: opts.length } : {}),
        ...(classes ? { classes: classes as PasswordClass[] } : {}),
        ...(opts.exclude !== undefined ? { exclude: opts.exclude } : {}),
        ...common,
      };
    }
    case 'keypair':
      if (opts.algorithm === undefined) throw new InvalidArgumentError('--type keypair needs --algorithm');
      return { type: 'keypair', algorithm: opts.algorithm, ...common };
    case 'certificate': {
      if (opts.cn === undefined) throw new InvalidArgumentError('--type certificate needs --cn');
      if (opts.validityDays === undefined)
        throw new InvalidArgumentError('--type certificate needs --validity-days');
      const sans = {
        ...(opts.dns ? { dns: opts.dns } : {}),
        ...(opts.ip ? { ip: opts.ip } : {}),
        ...(opts.uri ? { uri: opts.uri } : {}),
        ...(opts.email ? { email: opts.email } : {}),
      };
      return {
        type: 'certificate',
        commonName: opts.cn,
        validityDays: opts.validityDays,
        ...(opts.algorithm !== undefined ? { algorithm: opts.algorithm } : {}),
        ...(opts.org !== undefined ? { organization: opts.org } : {}),
        ...(opts.ou !== undefined ? { organizationalUnit: opts.ou } : {}),
        ...(Object.keys(sans).length > 0 ? { sans } : {}),
        ...(opts.ca ? { ca: true } : {}),
        ...(opts.issuer !== undefined ? { issuer: opts.issuer } : {}),
        ...(opts.allowedName ? { allowedNames: opts.allowedName } : {}),
        ...(opts.maxValidityDays !== undefined ? { maxValidityDays: opts.maxValidityDays } : {}),
        ...common,
      };
    }
  }
}

/** One line per fact people check: what was made and how to recognise it, never the value. */
function describe(result: GenerateResult): string {
  const lines = [`${result.path}: version ${result.version} (${result.type})`];
  if (result.publicKey) {
    lines.push(
      `algorithm: ${result.publicKey.algorithm}`,
      `fingerprint: sha256:${result.publicKey.fingerprint}`,
    );
    lines.push(result.publicKey.publicKey.trimEnd());
  }
  const cert = result.certificate;
  if (cert) {
    lines.push(
      `subject: ${cert.subject}`,
      `issuer: ${cert.issuer}${cert.ca ? '  (CA)' : ''}`,
      ...(cert.sans.length > 0 ? [`sans: ${cert.sans.join(', ')}`] : []),
      `serial: ${cert.serial}`,
      `fingerprint: sha256:${cert.fingerprint}`,
      `valid: ${cert.notBefore} to ${cert.notAfter}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** `coffer generate`: sends the request; the server answers with metadata only. */
export async function generate(
  out: Output,
  client: ClientFactory,
  path: string,
  opts: GenerateOptions,
): Promise<void> {
  const request = generateRequest(opts);
  const result = await (await client()).generate(path, request);
  out.result(describe(result), result);
}
