import type { Command } from 'commander';
import { type CofferClient, CofferClientError } from '../../../packages/client/src/index.js';
import { BUNDLE_FORMAT, BUNDLE_VERSION, type Bundle, BundleError } from '../bundle.js';
import type { CliIo } from '../io.js';
import { collect, folderPrefix, output } from '../output.js';
import { checkBundleOptions, collectSecrets, writeBundle } from './export.js';
import { type ImportOptions, importBundle, loadBundle, reportImport } from './import.js';

/**
 * `coffer backup [PREFIX]` and `coffer restore-backup FILE`: the bundle format of export/import
 * for a whole prefix, with each secret's description and tags. A backup holds the latest version
 * of each secret the caller can list and read; restoring writes them as new versions.
 */
export function registerBackupCommands(
  program: Command,
  io: CliIo,
  client: () => Promise<CofferClient>,
): void {
  program
    .command('backup')
    .description('an age-encrypted bundle of every secret below a prefix (latest values, descriptions, tags)')
    .argument('[prefix]', 'folder to back up (default: everything you can list)')
    .option('--to <recipient>', "the backup key's age recipient, age1… (repeatable)", collect)
    .option('-o, --output <file>', 'bundle file (mode 0600); default stdout when it is not a terminal')
    .option('--armor', 'ASCII-armored bundle')
    .action(
      async (rawPrefix: string | undefined, given: { to?: string[]; output?: string; armor?: boolean }) => {
        const opts = { ...given, to: given.to ?? [] };
        const out = output(program, io);
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
        if (file)
          out.result(summary, { file, root, recipients: opts.to, secrets: secrets.map((s) => s.path) });
        else out.note(summary);
      },
    );

  program
    .command('restore-backup')
    .description('write the secrets of a backup bundle back through the API')
    .argument('<file>', 'the backup bundle, or - for stdin')
    .option('--identity <keyfile>', 'the backup identity file (default: COFFER_AGE_IDENTITY)')
    .option('--prefix <prefix>', 'restore below this folder instead of the original paths')
    .option('--dry-run', 'show what would be written; write nothing')
    .action(async (file: string, opts: ImportOptions) => {
      const out = output(program, io);
      const bundle = await loadBundle(io, file, opts.identity);
      if (bundle.kind !== 'backup') {
        throw new BundleError(
          'bundle_invalid',
          0,
          'this is an export bundle, not a backup: use coffer import',
        );
      }
      if (bundle.secrets.length === 0)
        throw new CofferClientError('not_found', 0, 'the backup holds no secrets');
      const summary = await importBundle(await client(), bundle, { ...opts, io, out, label: 'restore' });
      reportImport(out, summary);
    });
}
