import { readFile, stat } from 'node:fs/promises';
import { armor, Decrypter, Encrypter, generateX25519Identity, identityToRecipient } from 'age-encryption';
import { z } from 'zod';
import {
  BATCH_GET_MAX_PATHS,
  DESCRIPTION_MAX_CHARS,
  SECRET_TYPES,
  type SecretValue,
} from '../../packages/client/src/contract.js';
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
    /** The value: `value` for text, `valueBase64` for a binary secret (exactly one). */
    value: z.string().optional(),
    valueBase64: z.string().optional(),
    /** The secret's type; left out (bundles made before types): the target's type is kept. */
    type: z.enum(SECRET_TYPES).optional(),
    description: z.string().max(DESCRIPTION_MAX_CHARS).optional(),
    tags: z.record(z.string(), z.string()).optional(),
  })
  .strict()
  .refine((s) => (s.value === undefined) !== (s.valueBase64 === undefined), 'a secret has one value');

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

/** The Bech32 alphabet (BIP 173). */
const BECH32 = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const BECH32_GEN = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function bech32Polymod(values: readonly number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= BECH32_GEN[i] as number;
  }
  return chk;
}

/**
 * Why `s` is not an age X25519 recipient, or undefined when it is one: Bech32 (BIP 173) with the
 * human-readable part `age` and 32 bytes of data. The checksum is verified here, as age itself
 * does, so that a mistyped recipient is refused before any secret is read, not when sealing.
 */
function recipientProblem(s: string): string | undefined {
  if (s !== s.toLowerCase() && s !== s.toUpperCase()) return 'mixed case';
  const lower = s.toLowerCase();
  const sep = lower.lastIndexOf('1');
  if (sep < 1) return 'not a Bech32 string (age1…)';
  const hrp = lower.slice(0, sep);
  if (hrp !== 'age') return `not an age X25519 recipient (it starts with "${hrp.slice(0, 16)}1", not "age1")`;
  const data: number[] = [];
  for (const c of lower.slice(sep + 1)) {
    const v = BECH32.indexOf(c);
    if (v === -1) return `invalid character ${JSON.stringify(c)}`;
    data.push(v);
  }
  // 32 bytes are 52 five-bit words (4 padding bits, zero), then a 6-word checksum.
  if (data.length !== 58) return 'wrong length (an X25519 recipient is age1 + 58 characters)';
  const expanded = [...hrp].map((c) => c.charCodeAt(0) >> 5);
  expanded.push(0, ...[...hrp].map((c) => c.charCodeAt(0) & 31));
  if (bech32Polymod([...expanded, ...data]) !== 1) return 'invalid checksum';
  if (((data[51] as number) & 0x0f) !== 0) return 'non-zero padding';
  return undefined;
}

/** The recipient, trimmed, or an `invalid_recipient` error that says what is wrong with it. */
export function checkRecipient(recipient: string): string {
  const r = recipient.trim();
  const problem = r === '' ? 'empty' : recipientProblem(r);
  if (problem !== undefined) {
    throw new CofferClientError(
      'invalid_recipient',
      0,
      `invalid recipient "${r.slice(0, 80)}": ${problem} (an age X25519 recipient is age1…, as printed by coffer keygen)`,
    );
  }
  // Bech32 may be all upper case; age's parser takes the lower-case form.
  return r.toLowerCase();
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
): Promise<Map<string, SecretValue>> {
  const values = new Map<string, SecretValue>();
  for (let i = 0; i < paths.length; i += BATCH_GET_MAX_PATHS) {
    const chunk = paths.slice(i, i + BATCH_GET_MAX_PATHS);
    const results: BatchGetResult[] = await client.batchGet(chunk);
    for (const r of results) {
      if (!r.ok) throw clientError(r.error.code, r.error.status, `${r.path}: ${r.error.message}`);
      values.set(r.path, r.secret);
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
