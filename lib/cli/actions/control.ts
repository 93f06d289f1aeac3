import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import type {
  CofferClient,
  PolicyPushResult,
  RevocationInfo,
  RevokeInput,
} from '../../../packages/client/src/index.js';
import type { RevokeOptions } from '../commands/revoke.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/*
 * The actions of `coffer policy push|history|rollback|approve`, `coffer revoke` and
 * `coffer revocations`: thin calls of the admin API. The server decides, validates and audits.
 */

/** The `*.cedar` files directly in `dir` (as the server loads a directory: not tests/ or examples/). */
async function policyFiles(dir: string): Promise<{ name: string; text: string }[]> {
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true }))
      .filter((e) => e.isFile() && e.name.endsWith('.cedar'))
      .map((e) => e.name)
      .sort();
  } catch {
    throw new InvalidArgumentError(`cannot read the policy directory ${dir}`);
  }
  if (names.length === 0) throw new InvalidArgumentError(`no .cedar files in ${dir}`);
  return Promise.all(names.map(async (name) => ({ name, text: await readFile(join(dir, name), 'utf8') })));
}

function pushed(program: Command, io: CliIo, result: PolicyPushResult, what: string): void {
  const state =
    result.status === 'active'
      ? 'active'
      : `pending: another admin runs \`coffer policy approve ${result.version}\``;
  output(program, io).result(`${what} v${result.version} (${result.hash.slice(0, 16)}…): ${state}\n`, result);
}

export async function pushPolicies(
  program: Command,
  io: CliIo,
  client: CofferClient,
  dir: string,
  comment?: string,
): Promise<void> {
  const files = await policyFiles(dir);
  pushed(program, io, await client.policyPush(files, comment), 'pushed');
}

export async function rollbackPolicies(program: Command, io: CliIo, client: CofferClient, version: number) {
  pushed(program, io, await client.policyRollback(version), `rolled back to v${version} as`);
}

export async function approvePolicies(program: Command, io: CliIo, client: CofferClient, version: number) {
  pushed(program, io, await client.policyApprove(version), 'approved');
}

export async function policyHistory(program: Command, io: CliIo, client: CofferClient): Promise<void> {
  const history = await client.policyHistory();
  const lines = [
    history.active
      ? `active: v${history.active.version} (generation ${history.active.generation})`
      : `active: the bundled set (${history.bundledHash.slice(0, 16)}…); nothing pushed`,
    ...(history.pending
      ? [
          `pending: v${history.pending.version} ${history.pending.action} by ${history.pending.by}, awaiting approval`,
        ]
      : []),
    ...history.versions.map((v) => {
      const mark = history.active?.version === v.version ? '*' : ' ';
      const note = v.comment ? `  ${v.comment}` : '';
      return `${mark} v${String(v.version).padEnd(4)} ${v.at}  ${v.hash.slice(0, 16)}  ${v.by}${note}`;
    }),
  ];
  output(program, io).show(`${lines.join('\n')}\n`, history);
}

/** `User::"x"`, `Coffer::Role::"arn…"`, or a bare id (then any principal type with that id). */
export function parsePrincipal(raw: string): { type?: 'User' | 'Role' | 'Workload'; id: string } {
  const m = /^(?:Coffer::)?(User|Role|Workload)::"((?:[^"\\]|\\.)*)"$/.exec(raw.trim());
  if (m) return { type: m[1] as 'User' | 'Role' | 'Workload', id: JSON.parse(`"${m[2]}"`) as string };
  if (raw.includes('::')) {
    throw new InvalidArgumentError('principal must be User::"id", Role::"id", Workload::"id" or a bare id');
  }
  return { id: raw };
}

/** An ISO 8601 time, `now`, or (with `future`) a duration from now: 90m, 12h, 7d. */
function parseTime(raw: string, name: string, future: boolean): string {
  if (raw === 'now') return new Date().toISOString();
  const d = /^(\d+)([smhd])$/.exec(raw);
  if (d && future) {
    const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[d[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(Date.now() + Number(d[1]) * unit * 1000).toISOString();
  }
  const ms = Date.parse(raw);
  if (Number.isNaN(ms))
    throw new InvalidArgumentError(
      `${name} must be an ISO 8601 time${future ? ' or a duration' : ' or "now"'}`,
    );
  return new Date(ms).toISOString();
}

const describe = (r: RevocationInfo): string =>
  r.group !== undefined
    ? `group ${r.group}`
    : r.principal?.type
      ? `${r.principal.type}::${JSON.stringify(r.principal.id)}`
      : `${JSON.stringify(r.principal?.id ?? '')} (any type)`;

export async function revoke(
  program: Command,
  io: CliIo,
  client: CofferClient,
  principal: string | undefined,
  opts: RevokeOptions,
): Promise<void> {
  if ((principal === undefined) === (opts.group === undefined)) {
    throw new InvalidArgumentError('give a principal or --group, not both');
  }
  const input: RevokeInput = {
    ...(opts.group !== undefined
      ? { group: opts.group }
      : { principal: parsePrincipal(principal as string) }),
    ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
    ...(opts.until !== undefined ? { until: parseTime(opts.until, '--until', true) } : {}),
    ...(opts.tokensIssuedBefore !== undefined
      ? { tokensIssuedBefore: parseTime(opts.tokensIssuedBefore, '--tokens-issued-before', false) }
      : {}),
  } as RevokeInput;
  const entry = await client.revoke(input);
  const scope = entry.tokensIssuedBefore ? ` (credentials issued before ${entry.tokensIssuedBefore})` : '';
  output(program, io).result(`revoked ${describe(entry)}${scope}: ${entry.id}\n`, entry);
}

export async function listRevocations(program: Command, io: CliIo, client: CofferClient): Promise<void> {
  const list = await client.revocations();
  const lines = list.map((r) => {
    const extra = [
      r.tokensIssuedBefore ? `issued before ${r.tokensIssuedBefore}` : '',
      r.until ? `until ${r.until}` : '',
      r.live === false ? 'expired' : '',
      r.reason ? `reason: ${r.reason}` : '',
    ].filter((s) => s !== '');
    return `${r.id}  ${describe(r)}  by ${r.by} at ${r.at}${extra.length > 0 ? `  ${extra.join('; ')}` : ''}`;
  });
  output(program, io).show(lines.length > 0 ? `${lines.join('\n')}\n` : 'no revocations\n', list);
}

export async function removeRevocation(program: Command, io: CliIo, client: CofferClient, id: string) {
  const result = await client.unrevoke(id);
  output(program, io).result(`removed ${id}\n`, result);
}
