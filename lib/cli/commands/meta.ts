import type { Command } from 'commander';
import {
  DESCRIPTION_MAX_CHARS,
  MAX_VERSIONS,
  type MetadataPatch,
  ownRecord,
} from '../../../packages/client/src/contract.js';
import { parseIntArg, parseTags } from '../args.js';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { collect, output } from '../output.js';

interface MetaOptions {
  tag?: string[];
  untag?: string[];
  description?: string;
  maxVersions?: number;
}

/**
 * `coffer meta PATH [--tag k=v] [--untag k] [--description T] [--max-versions N]`: changes a
 * secret's metadata without writing a version (PATCH /v1/meta); with no option it prints the
 * metadata. `--tag` and `--untag` edit the current tags: they are read first and the whole set is
 * sent back, so a concurrent retag between the two can be overwritten.
 */
export function registerMetaCommand(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('meta')
    .description("show or change a secret's tags, description and max versions (no new version)")
    .argument('<path>', 'secret path')
    .option('--tag <key=value>', 'add or change a tag (repeatable)', collect)
    .option('--untag <key>', 'remove a tag (repeatable)', collect)
    .option('--description <text>', `description (up to ${DESCRIPTION_MAX_CHARS} characters; "" clears it)`)
    .option(
      '--max-versions <n>',
      `versions kept (${MAX_VERSIONS.min}-${MAX_VERSIONS.max}); older ones are pruned at once`,
      parseIntArg('max-versions', MAX_VERSIONS.min, MAX_VERSIONS.max),
    )
    .action(async (path: string, opts: MetaOptions) => {
      const coffer = await client();
      const out = output(program, io);
      const changesTags = (opts.tag?.length ?? 0) > 0 || (opts.untag?.length ?? 0) > 0;
      if (!changesTags && opts.description === undefined && opts.maxVersions === undefined) {
        const meta = await coffer.history(path);
        const tags = Object.entries(meta.tags).map(([k, v]) => `${k}=${v}`);
        out.show(
          `${meta.path}  current version ${meta.currentVersion}  max versions ${meta.maxVersions}\n` +
            `type: ${meta.type ?? 'text'}\ndescription: ${meta.description ?? ''}\ntags: ${tags.join(' ')}\n` +
            (meta.rotation ? `rotation: every ${meta.rotation.every}, next ${meta.rotation.nextAt}\n` : '') +
            (meta.rotationRequested
              ? `replace by hand: since ${meta.rotationRequested.at} (${meta.rotationRequested.reason})\n`
              : ''),
          meta,
        );
        return;
      }
      const patch: MetadataPatch = {};
      if (changesTags) {
        const tags = new Map(Object.entries((await coffer.history(path)).tags));
        for (const key of opts.untag ?? []) tags.delete(key);
        for (const [k, v] of Object.entries(parseTags(opts.tag ?? []))) tags.set(k, v);
        patch.tags = ownRecord(tags);
      }
      if (opts.description !== undefined) patch.description = opts.description;
      if (opts.maxVersions !== undefined) patch.maxVersions = opts.maxVersions;
      const meta = await coffer.patchMetadata(path, patch);
      out.result(`${meta.path}: metadata updated (version ${meta.currentVersion} unchanged)\n`, meta);
    });
}
