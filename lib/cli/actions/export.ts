import { resolve } from 'node:path';
import {
  type CofferClient,
  CofferClientError,
  clientError,
  type SecretValue,
} from '../../../packages/client/src/index.js';
import {
  BUNDLE_FORMAT,
  BUNDLE_VERSION,
  type Bundle,
  type BundleSecret,
  checkRecipient,
  listAll,
  readAll,
  sealBundle,
} from '../bundle.js';
import type { ClientFactory } from '../credentials.js';
import { writeFileAtomic } from '../files.js';
import type { CliIo } from '../io.js';
import type { Output } from '../output.js';
import { type Progress, progressBar } from '../progress.js';

const parentOf = (path: string) => path.slice(0, path.lastIndexOf('/') + 1);

/**
 * The secrets named by export arguments, with the name each gets below its argument: a prefix
 * ending in `/` (or '') is every secret below it; any other argument is that secret, or, when no
 * such secret exists, the folder of that name. A missing or denied secret fails the whole export.
 */
export async function collectSecrets(
  client: CofferClient,
  args: readonly string[],
  options: { metadata: boolean; label: string; io: CliIo; out: Output },
): Promise<BundleSecret[]> {
  const names = new Map<string, string>();
  const add = (path: string, name: string) => {
    if (!names.has(path)) names.set(path, name);
  };
  const singles: string[] = [];
  for (const arg of args) {
    if (arg === '' || arg.endsWith('/')) {
      const paths = await listAll(client, arg);
      if (paths.length === 0)
        throw new CofferClientError('not_found', 0, `${arg || '(all)'}: no secrets to export`);
      for (const p of paths) add(p, p.slice(arg.length));
    } else {
      singles.push(arg);
    }
  }
  for (const arg of singles) {
    const [probe] = await client.batchGet([arg]);
    if (probe?.ok) {
      add(arg, arg.slice(parentOf(arg).length));
      continue;
    }
    if (probe && probe.error.code !== 'not_found') {
      throw clientError(probe.error.code, probe.error.status, `${arg}: ${probe.error.message}`);
    }
    const paths = await listAll(client, `${arg}/`);
    if (paths.length === 0) throw new CofferClientError('not_found', 404, `${arg}: no such secret or folder`);
    for (const p of paths) add(p, p.slice(arg.length + 1));
  }
  const paths = [...names.keys()];
  const enabled = !options.out.json && !options.out.quiet;
  const bar: Progress = progressBar(
    options.io,
    options.label,
    paths.length * (options.metadata ? 2 : 1),
    enabled,
  );
  try {
    // Values the probes above fetched are in the client's cache: this reads each secret once.
    const values = await readAll(client, paths, bar);
    const secrets: BundleSecret[] = [];
    for (const path of paths) {
      const v = values.get(path) as SecretValue;
      const secret: BundleSecret = {
        path,
        name: names.get(path) as string,
        version: v.version,
        ...(v.valueBase64 !== undefined ? { valueBase64: v.valueBase64 } : { value: v.value ?? '' }),
        ...(v.type !== undefined && v.type !== 'text' ? { type: v.type } : {}),
      };
      if (options.metadata) {
        const meta = await client.history(path);
        bar.tick();
        if (meta.description !== undefined) secret.description = meta.description;
        if (Object.keys(meta.tags).length > 0) secret.tags = meta.tags;
      }
      secrets.push(secret);
    }
    return secrets;
  } finally {
    bar.done();
  }
}

/** Encrypts and writes a bundle: to a 0600 file, or to stdout when it is not a terminal. */
export async function writeBundle(
  io: CliIo,
  bundle: Bundle,
  opts: { to: string[]; output?: string; armor?: boolean },
): Promise<string | undefined> {
  const sealed = await sealBundle(bundle, opts.to, opts.armor === true);
  if (opts.output === undefined || opts.output === '-') {
    // Bytes as they are: a string would be re-encoded as UTF-8 on the way out.
    if (typeof sealed === 'string') io.stdout.write(sealed);
    else (io.stdout as unknown as { write(b: Uint8Array): unknown }).write(sealed);
    return undefined;
  }
  const target = resolve(io.cwd, opts.output);
  await writeFileAtomic(target, sealed, { mode: 0o600 });
  return target;
}

/** Checks the bundle options before anything is read. */
export function checkBundleOptions(
  io: CliIo,
  out: Output,
  opts: { to: string[]; output?: string; armor?: boolean },
) {
  if (opts.to.length === 0) {
    throw new CofferClientError(
      'invalid_recipient',
      0,
      'name who can open the bundle: --to age1… (repeatable)',
    );
  }
  for (const r of opts.to) checkRecipient(r);
  const toStdout = opts.output === undefined || opts.output === '-';
  if (toStdout && io.stdout.isTTY && !opts.armor) {
    throw new CofferClientError(
      'invalid_config',
      0,
      'refusing to write a binary bundle to the terminal: use -o FILE or --armor',
    );
  }
  if (toStdout && out.json) {
    throw new CofferClientError(
      'invalid_config',
      0,
      '--json needs -o FILE (the bundle itself would go to stdout)',
    );
  }
}

/**
 * `coffer export --to RECIPIENT PATH|PREFIX...`: an age-encrypted bundle of secrets that only
 * the recipient can open, to hand to a new teammate (who runs `coffer import`).
 */
export async function exportSecrets(
  io: CliIo,
  out: Output,
  client: ClientFactory,
  args: string[],
  given: { to?: string[]; output?: string; armor?: boolean },
): Promise<void> {
  const opts = { ...given, to: given.to ?? [] };
  checkBundleOptions(io, out, opts);
  const secrets = await collectSecrets(await client(), args, {
    metadata: false,
    label: 'export',
    io,
    out,
  });
  const bundle: Bundle = {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    kind: 'export',
    createdAt: new Date().toISOString(),
    secrets,
  };
  const file = await writeBundle(io, bundle, opts);
  const summary = `exported ${secrets.length} secret(s)${file ? ` to ${opts.output}` : ''} for ${opts.to.join(', ')}\n`;
  if (file) out.result(summary, { file, recipients: opts.to, secrets: secrets.map((s) => s.path) });
  else out.note(summary);
}
