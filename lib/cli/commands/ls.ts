import type { Command } from 'commander';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/** `coffer ls [PREFIX]`: the folders and secrets below a prefix. */
export function registerLsCommand(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('ls')
    .description('list secrets under a prefix (one level; -r for all)')
    .argument('[prefix]', 'path prefix, e.g. team-a/', '')
    .option('-r, --recursive', 'list every secret under the prefix')
    .action(async (prefix: string, opts: { recursive?: boolean }) => {
      const c = await client();
      const items: { path: string; version: number; updatedAt: string }[] = [];
      const folders: string[] = [];
      for await (const page of c.list(prefix, opts.recursive ? {} : { delimiter: '/' })) {
        items.push(...page.items);
        folders.push(...(page.folders ?? []));
      }
      const human = [...folders.map((f) => `${f}\n`), ...items.map((i) => `${i.path}\n`)].join('');
      output(program, io).show(human, { items, ...(opts.recursive ? {} : { folders }) });
    });
}
