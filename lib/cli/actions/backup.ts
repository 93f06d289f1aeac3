import { CofferClientError } from '../../../packages/client/src/index.js';
import { BUNDLE_FORMAT, BUNDLE_VERSION, type Bundle, BundleError } from '../bundle.js';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { folderPrefix, type Output } from '../output.js';
import { checkBundleOptions, collectSecrets, writeBundle } from './export.js';
import { type ImportOptions, importBundle, loadBundle, reportImport } from './import.js';

/**
 * `coffer backup [PREFIX]`: the bundle format of export/import for a whole prefix, with each
 * secret's description and tags: the latest version of each secret the caller can list and read.
 */
export async function backupSecrets(
  io: CliIo,
  out: Output,
  client: ClientFactory,
  rawPrefix: string | undefined,
  given: { to?: string[]; output?: string; armor?: boolean },
): Promise<void> {
  const opts = { ...given, to: given.to ?? [] };
  checkBundleOptions(io, out, opts);
  const root = folderPrefix(rawPrefix ?? '');
  const secrets = await collectSecrets(await client(), [root], {
    metadata: true,
    label: 'backup',
    io,
    out,
  });
  const bundle: Bundle = {
    format: BUNDLE_FORMAT,
    version: BUNDLE_VERSION,
    kind: 'backup',
    createdAt: new Date().toISOString(),
    root,
    secrets,
  };
  const file = await writeBundle(io, bundle, opts);
  const summary = `backed up ${secrets.length} secret(s) below "${root}"${file ? ` to ${opts.output}` : ''}\n`;
  if (file) out.result(summary, { file, root, recipients: opts.to, secrets: secrets.map((s) => s.path) });
  else out.note(summary);
}

/** `coffer restore-backup FILE`: writes a backup's secrets back through the API, as new versions. */
export async function restoreBackup(
  io: CliIo,
  out: Output,
  client: ClientFactory,
  file: string,
  opts: ImportOptions,
): Promise<void> {
  const bundle = await loadBundle(io, file, opts.identity);
  if (bundle.kind !== 'backup') {
    throw new BundleError('bundle_invalid', 0, 'this is an export bundle, not a backup: use coffer import');
  }
  if (bundle.secrets.length === 0) throw new CofferClientError('not_found', 0, 'the backup holds no secrets');
  const summary = await importBundle(await client(), bundle, { ...opts, io, out, label: 'restore' });
  reportImport(out, summary);
}
