import type { Command } from 'commander';
import type {
  AccessPrincipal,
  AccessWhatItem,
  AccessWhoAction,
  AccessWhoReport,
  CofferClient,
} from '../../../packages/client/src/index.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';
import { progressCounter } from '../progress.js';

const flags = (i: AccessWhatItem) => `${i.read ? 'r' : '-'}${i.write ? 'w' : '-'}${i.list ? 'l' : '-'}`;

function describePrincipal(p: AccessPrincipal): string {
  const tags = Object.entries(p.tags).map(([k, v]) => `${k}=${v}`);
  const origin =
    p.source === 'directory' ? `as last seen ${p.lastSeen ?? ''}`.trim() : 'groups given, not as last seen';
  return (
    `${p.entity}\ngroups: ${p.groups.join(', ') || '(none)'}\n` +
    (tags.length > 0 ? `tags: ${tags.join(' ')}\n` : '') +
    `(${origin})\n`
  );
}

/** `coffer access what`: follows every page, with a running count on a terminal. */
export async function accessWhat(
  program: Command,
  io: CliIo,
  client: CofferClient,
  principal: string,
  opts: { groups?: string; prefix: string },
): Promise<void> {
  const out = output(program, io);
  const groups = opts.groups
    ?.split(',')
    .map((g) => g.trim())
    .filter((g) => g !== '');
  const progress = progressCounter(io, 'secrets', !out.json && !out.quiet);
  const items: AccessWhatItem[] = [];
  const folders = new Set<string>();
  let scanned = 0;
  let first: { principal: AccessPrincipal; prefix: string; policySetHash: string } | undefined;
  try {
    for await (const page of client.accessWhat(principal, {
      ...(groups ? { groups } : {}),
      ...(opts.prefix ? { prefix: opts.prefix } : {}),
    })) {
      first ??= { principal: page.principal, prefix: page.prefix, policySetHash: page.policySetHash };
      items.push(...page.items);
      for (const f of page.folders) folders.add(f);
      scanned += page.scanned;
      progress.tick(page.scanned);
    }
  } finally {
    progress.done();
  }
  const report = { ...(first as NonNullable<typeof first>), scanned, items, folders: [...folders].sort() };
  const human =
    describePrincipal(report.principal) +
    (items.length > 0 ? `RWL  PATH\n${items.map((i) => `${flags(i)}  ${i.path}\n`).join('')}` : '') +
    (report.folders.length > 0
      ? `folders it may list:\n${report.folders.map((f) => `  ${f}\n`).join('')}`
      : '') +
    `${items.length} of ${scanned} secret(s)${report.prefix ? ` under ${report.prefix}` : ''} with access\n`;
  out.show(human, report);
}

/** `coffer access who`. */
export async function accessWho(
  program: Command,
  io: CliIo,
  client: CofferClient,
  path: string,
  action: AccessWhoAction,
): Promise<void> {
  const out = output(program, io);
  const report: AccessWhoReport = await client.accessWho(path, { action });
  for (const w of report.warnings) out.note(`warning: ${w}\n`);
  const principals = report.principals.map(
    (p) => `  ${p.entity}  (${p.sources.join(', ')}${p.lastSeen ? `; last seen ${p.lastSeen}` : ''})\n`,
  );
  out.show(
    `${report.action} on ${report.path}\n` +
      `groups:\n${report.groups.map((g) => `  ${g}\n`).join('') || '  (none)\n'}` +
      `principals:\n${principals.join('') || '  (none)\n'}`,
    report,
  );
}
