import { type Command, InvalidArgumentError } from 'commander';
import type { LifecycleItem } from '../../../packages/client/src/contract.js';
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
    .option('--rotation-overdue', 'only secrets whose rotation is overdue')
    .option('--expiring <duration>', 'only certificates that expire within a duration (30d)', parseWithin)
    .action(
      async (prefix: string, opts: { recursive?: boolean; rotationOverdue?: boolean; expiring?: string }) => {
        const c = await client();
        if (opts.rotationOverdue || opts.expiring !== undefined) {
          // Every page, as for a plain listing.
          const items: LifecycleItem[] = [];
          for await (const page of opts.rotationOverdue
            ? c.lifecycleAll('rotation-overdue', { prefix })
            : c.lifecycleAll('expiring', { prefix, within: opts.expiring as string }))
            items.push(...page.items);
          const human = items
            .map((i) => (opts.rotationOverdue ? overdueLine(i) : `${i.path}  expires ${i.notAfter}\n`))
            .join('');
          output(program, io).show(human, { items });
          return;
        }
        const items: { path: string; version: number; updatedAt: string }[] = [];
        const folders: string[] = [];
        for await (const page of c.list(prefix, opts.recursive ? {} : { delimiter: '/' })) {
          items.push(...page.items);
          folders.push(...(page.folders ?? []));
        }
        const human = [...folders.map((f) => `${f}\n`), ...items.map((i) => `${i.path}\n`)].join('');
        output(program, io).show(human, { items, ...(opts.recursive ? {} : { folders }) });
      },
    );
}

function parseWithin(value: string): string {
  if (!/^[1-9][0-9]{0,4}[smhd]$/.test(value))
    throw new InvalidArgumentError('must be a duration such as 30d');
  return value;
}

/** One overdue secret: when its rotation was due, or since when it waits to be replaced by hand. */
function overdueLine(i: LifecycleItem): string {
  const parts = [i.path];
  if (i.nextAt !== undefined) parts.push(`due ${i.nextAt}`);
  if (i.rotationRequested)
    parts.push(`replace by hand since ${i.rotationRequested.at} (${i.rotationRequested.reason})`);
  if (i.lastRotationError) parts.push(`last error: ${i.lastRotationError.message}`);
  return `${parts.join('  ')}\n`;
}
