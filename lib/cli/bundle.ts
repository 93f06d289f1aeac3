import { readFile, stat } from 'node:fs/promises';
import { armor, Decrypter, Encrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { z } from 'zod';
import { BATCH_GET_MAX_PATHS, DESCRIPTION_MAX_CHARS } from '../../packages/client/src/contract.js';
import {
  type BatchGetResult,
  type CofferClient,
  CofferClientError,
  clientError,
} from '../../packages/client/src/index.js';
import type { CliIo } from './io.js';
import type { Progress } from './progress.js';

/**
 * The bundle of `coffer export`, `import`, `backup` and `restore-backup`: a JSON document holding
 * secrets, encrypted with age (https://age-encryption.org/v1) to X25519 recipients. Only the
 * holder of a matching identity can open it, and age authenticates every byte: a bundle that was
 * altered fails as a whole, it never yields a changed value.
 */
export const BUNDLE_FORMAT = 'coffer-bundle';
export const BUNDLE_VERSION = 1;
const ARMOR_HEADER = '-----BEGIN AGE ENCRYPTED FILE-----';
/** The first line of every binary age file (https://age-encryption.org/v1). */
const AGE_HEADER = 'age-encryption.org/';
/** age's own message when no identity opens any recipient stanza. */
const NO_MATCH = "no identity matched any of the file's recipients";

const bundleSecret = z
  .object({
    /** Where the secret was read. */
    path: z.string().min(1).max(1024),
    /** The path below the folder it was exported from: `import --prefix P` writes to P + name. */
    name: z.string().min(1).max(1024),
    version: z.number().int().positive(),
    value: z.string(),
    description: z.string().max(DESCRIPTION_MAX_CHARS).optional(),
    tags: z.record(z.string(), z.string()).optional(),
  })
  .strict();

const bundleSchema = z
  .object({
    format: z.literal(BUNDLE_FORMAT),
    version: z.literal(BUNDLE_VERSION),
    kind: z.enum(['export', 'backup']),
    createdAt: z.string(),
    /** The prefix a backup was taken of ('' for everything). */
    root: z.string().optional(),
    secrets: z.array(bundleSecret),
  })
  .strict();

export type BundleSecret = z.infer<typeof bundleSecret>;
export type Bundle = z.infer<typeof bundleSchema>;

export class BundleError extends CofferClientError {}

/** A new X25519 identity and its recipient, in the file format of age-keygen. */
export async function newIdentity(
  now = new Date(),
): Promise<{ identity: string; recipient: string; file: string }> {
  const identity = await generateX25519Identity();
  const recipient = await identityToRecipient(identity);
  const file = `# created: ${now.toISOString()}\n# public key: ${recipient}\n${identity}\n`;
  return { identity, recipient, file };
}

export function checkRecipient(recipient: string): string {
  const r = recipient.trim();
  // X25519 recipients are Bech32 "age1" + 58 characters; anything else is refused before encrypting.
  if (!/^age1[02-9ac-hj-np-z]{58}$/.test(r)) {
    throw new CofferClientError(
      'invalid_recipient',
      0,
      `"${r.slice(0, 80)}" is not an age X25519 recipient (age1…, as printed by coffer keygen)`,
    );
  }
  return r;
}

export async function sealBundle(
  bundle: Bundle,
  recipients: readonly string[],
  asArmor: boolean,
): Promise<Uint8Array | string> {
  const encrypter = new Encrypter();
  for (const r of recipients) encrypter.addRecipient(checkRecipient(r));
  const sealed = await encrypter.encrypt(JSON.stringify(bundle));
  return asArmor ? armor.encode(sealed) : sealed;
}

/**
 * The identities in an age identity file (comments and blank lines skipped). Warns when the file
 * can be read by other users, as ssh does for private keys.
 */
export async function readIdentities(file: string, io: CliIo): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
    if (process.platform !== 'win32' && ((await stat(file)).mode & 0o077) !== 0) {
      io.stderr.write(`coffer: warning: ${file} is readable by other users; run chmod 600 on it\n`);
    }
  } catch {
    throw new BundleError('identity_unreadable', 0, `cannot read the identity file ${file}`);
  }
  const identities = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.startsWith('AGE-SECRET-KEY-'));
  if (identities.length === 0) {
    throw new BundleError('identity_unreadable', 0, `${file} holds no age identity (AGE-SECRET-KEY-…)`);
  }
  return identities;
}

/** Decrypts and checks a bundle. Failures say what went wrong, never what the bundle holds. */
export async function openBundle(
  data: Uint8Array,
  identities: readonly string[],
  identityFile: string,
): Promise<Bundle> {
  let raw = data;
  const head = Buffer.from(data.subarray(0, 64)).toString('latin1').trimStart();
  if (head.startsWith(ARMOR_HEADER)) {
    try {
      raw = armor.decode(Buffer.from(data).toString('utf8'));
    } catch {
      throw damaged();
    }
  } else if (!head.startsWith(AGE_HEADER)) {
    // Another file given by mistake (the identity, a template): say so, not "damaged".
    throw new BundleError(
      'bundle_invalid',
      0,
      'this is not an age-encrypted bundle (made by coffer export or coffer backup)',
    );
  }
  const decrypter = new Decrypter();
  for (const identity of identities) {
    try {
      decrypter.addIdentity(identity);
    } catch {
      throw new BundleError('identity_unreadable', 0, `${identityFile} holds an invalid age identity`);
    }
  }
  let text: string;
  try {
    text = await decrypter.decrypt(raw, 'text');
  } catch (err) {
    if (err instanceof Error && err.message === NO_MATCH) {
      const recipients = await Promise.all(identities.map((i) => identityToRecipient(i)));
      throw new BundleError(
        'bundle_wrong_identity',
        0,
        `this bundle was not encrypted to the identity in ${identityFile} (${recipients.join(', ')}); ` +
          'ask the sender to export it again with --to set to that recipient',
      );
    }
    throw damaged();
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new BundleError('bundle_invalid', 0, 'the bundle opened but does not hold a Coffer bundle');
  }
  const result = bundleSchema.safeParse(parsed);
  if (!result.success) {
    throw new BundleError(
      'bundle_invalid',
      0,
      'the bundle opened but is not a Coffer bundle of a supported version',
    );
  }
  return result.data;
}

function damaged(): BundleError {
  return new BundleError(
    'bundle_invalid',
    0,
    'the bundle is damaged or was altered: it failed age authentication, nothing was read from it',
  );
}

/**
 * Reads the latest value of each path (20 per request), all or nothing: a missing or denied path
 * fails the whole read, naming the path, so that no bundle or file is written with a hole in it.
 */
export async function readAll(
  client: CofferClient,
  paths: readonly string[],
  progress: Progress,
): Promise<Map<string, { version: number; value: string }>> {
  const values = new Map<string, { version: number; value: string }>();
  for (let i = 0; i < paths.length; i += BATCH_GET_MAX_PATHS) {
    const chunk = paths.slice(i, i + BATCH_GET_MAX_PATHS);
    const results: BatchGetResult[] = await client.batchGet(chunk);
    for (const r of results) {
      if (!r.ok) throw clientError(r.error.code, r.error.status, `${r.path}: ${r.error.message}`);
      values.set(r.path, { version: r.secret.version, value: r.secret.value });
    }
    progress.tick(chunk.length);
  }
  return values;
}

/** Every secret path under a folder prefix that the caller may list. */
export async function listAll(client: CofferClient, prefix: string): Promise<string[]> {
  const paths: string[] = [];
  for await (const page of client.list(prefix, { limit: 1000 })) paths.push(...page.items.map((i) => i.path));
  return paths;
}
