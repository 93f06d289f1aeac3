import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import type { Output } from '../output.js';
import { progressBar } from '../progress.js';

interface Cursor {
  readonly scanned: number;
  readonly rewrapped: number;
  readonly skipped: number;
  readonly done: boolean;
}

interface Status {
  readonly root: { readonly active: string; readonly keys: readonly Record<string, unknown>[] };
  readonly folders: readonly {
    readonly folder: string;
    readonly versions: readonly { id: string; state: string; root: string; secretVersions: number | null }[];
  }[];
  readonly lastScan: string | null;
  readonly rewrap: (Cursor & { readonly startedAt: string }) | null;
  readonly instance: {
    readonly rootOps: Record<string, number>;
    readonly cache: { hits: number; misses: number; entries: number };
  };
}

/** Runs one `coffer keys` subcommand against the server. */
export async function keysAction(
  io: CliIo,
  out: Output,
  client: ClientFactory,
  operation: string,
  args: Record<string, unknown>,
): Promise<void> {
  const coffer = await client();
  switch (operation) {
    case 'status': {
      const s = await coffer.keyAdmin<Status>('status');
      const lines = [`root ${s.root.active}`];
      for (const k of s.root.keys) {
        lines.push(
          `  ${k.keyId}  ${k.state}  branch keys ${k.branchKeys}  secret versions ${k.secretVersions ?? '?'}`,
        );
      }
      for (const f of s.folders) {
        lines.push(`folder ${f.folder}`);
        for (const v of f.versions) {
          lines.push(`  ${v.id}  ${v.state}  root ${v.root}  secret versions ${v.secretVersions ?? '?'}`);
        }
      }
      lines.push(`last scan: ${s.lastScan ?? 'never'}`);
      if (s.rewrap) {
        lines.push(
          `re-wrap: ${s.rewrap.done ? 'done' : 'in progress'} since ${s.rewrap.startedAt}, scanned ${s.rewrap.scanned}, re-wrapped ${s.rewrap.rewrapped}`,
        );
      }
      const ops = s.instance.rootOps;
      lines.push(
        `this instance: root key operations ${Object.values(ops).reduce((a, b) => a + b, 0)}, cache hits ${s.instance.cache.hits}, misses ${s.instance.cache.misses}`,
      );
      out.show(`${lines.join('\n')}\n`, s);
      return;
    }
    case 'rotate': {
      const body: Record<string, unknown> = {};
      if (args.folder !== undefined) body.folder = args.folder;
      if (args.root) body.root = true;
      if (args.kmsKey !== undefined) body.kmsKeyId = args.kmsKey;
      const r = await coffer.keyAdmin<Record<string, unknown>>('rotate', body);
      const rotated = r.rotated as { folder: string; from: string | null; to: string }[] | undefined;
      const human = rotated
        ? rotated.map((x) => `${x.folder}: ${x.from ?? '(none)'} -> ${x.to}\n`).join('')
        : `root: ${r.from} -> ${r.to}${r.onDemand ? ' (KMS on-demand rotation)' : ''}, branch keys re-wrapped ${r.branchKeys}\n`;
      out.result(human, r);
      return;
    }
    case 'revert': {
      const body: Record<string, unknown> = {};
      if (args.folder !== undefined) body.folder = args.folder;
      if (args.root) body.root = true;
      const r = await coffer.keyAdmin('revert', body);
      out.result(`${JSON.stringify(r)}\n`, r);
      return;
    }
    case 'flush': {
      const r = await coffer.keyAdmin<{ generation: number }>('flush');
      out.result(`flush ${r.generation} requested: caches empty within the flush bound\n`, r);
      return;
    }
    case 'rewrap': {
      const status = await coffer.keyAdmin<Status>('status');
      let total = 0;
      for (const f of status.folders) {
        if (args.folder !== undefined && f.folder !== args.folder) continue;
        for (const v of f.versions) total += v.secretVersions ?? 0;
      }
      const bar = progressBar(io, 're-wrap', total, !out.json && !out.quiet);
      let seen =
        status.rewrap && !status.rewrap.done && args.folder === undefined ? status.rewrap.scanned : 0;
      let cursor: Cursor | null = null;
      try {
        do {
          const body: Record<string, unknown> = args.folder !== undefined ? { folder: args.folder } : {};
          cursor = (await coffer.keyAdmin<{ cursor: Cursor | null }>('rewrap', body)).cursor;
          if (cursor) {
            bar.tick(Math.max(0, cursor.scanned - seen));
            seen = cursor.scanned;
          }
        } while (cursor && !cursor.done);
      } finally {
        bar.done();
      }
      out.result(
        `re-wrap done: scanned ${cursor?.scanned ?? 0}, re-wrapped ${cursor?.rewrapped ?? 0}, changed concurrently ${cursor?.skipped ?? 0}\n`,
        cursor,
      );
      return;
    }
    case 'retire': {
      const r = await coffer.keyAdmin<{ retired: string; destroyAfter: string }>('retire', { id: args.id });
      out.result(`${r.retired} retired; its wrapped material is destroyed after ${r.destroyAfter}\n`, r);
      return;
    }
  }
}
