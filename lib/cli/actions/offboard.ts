import type { Command } from 'commander';
import type { CofferClient, OffboardRead, OffboardReport } from '../../../packages/client/src/index.js';
import type { OffboardOptions } from '../commands/offboard.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

function rotationCell(r: OffboardRead): string {
  if (r.rotation === null) return '-';
  const parts = [r.rotation.configured ? 'policy' : 'no policy'];
  if (r.rotation.rotated) parts.push('rotated');
  else if (r.rotation.markedDue) parts.push('due');
  if (r.rotation.error) parts.push(`failed: ${r.rotation.error}`);
  return parts.join(', ');
}

/** The table people read: paths and counts only, never a value. */
export function offboardTable(report: OffboardReport): string {
  const who = report.principal.type
    ? `${report.principal.type}::${JSON.stringify(report.principal.id)}`
    : `${JSON.stringify(report.principal.id)} (any type)`;
  const lines = [
    `${report.alreadyRevoked ? 'already revoked' : 'revoked'} ${who}: ${report.revocation.id}`,
    `reads from ${report.window.since} to ${report.window.until}${report.window.days !== null ? ` (${report.window.days} days)` : ''}`,
    '',
  ];
  if (report.read.length === 0) lines.push('read: none');
  else {
    const rows = report.read.map((r) => [
      r.path,
      String(r.reads),
      r.lastRead,
      r.via.join('+'),
      r.couldRead === null ? '?' : r.couldRead ? 'yes' : 'no',
      rotationCell(r),
    ]);
    const head = ['READ', 'READS', 'LAST READ', 'VIA', 'STILL READABLE', 'ROTATION'];
    const width = head.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] as string).length)));
    const fmt = (row: string[]) =>
      row
        .map((c, i) => (i === row.length - 1 ? c : c.padEnd(width[i] as number)))
        .join('  ')
        .trimEnd();
    lines.push(fmt(head), ...rows.map(fmt));
  }
  if (report.possiblyRead.length > 0) {
    lines.push(
      '',
      'possibly read (batch reads that were partly denied):',
      ...report.possiblyRead.map((p) => `  ${p}`),
    );
  }
  lines.push('');
  if (report.couldRead === null) lines.push('could read: unknown');
  else {
    const groups = report.couldRead.principal.groups.join(', ') || '(none)';
    const policy = new Set(report.couldRead.withRotationPolicy);
    lines.push(
      `could read before the revocation (${report.couldRead.paths.length}, ${policy.size} with a rotation policy; groups ${groups}):`,
      ...report.couldRead.paths.map((p) => `  ${p}${policy.has(p) ? '  (rotation policy)' : ''}`),
    );
  }
  lines.push(
    '',
    report.rotation.configured
      ? `rotation: ${report.rotation.markedDue.length} marked due, ${report.rotation.rotated.length} rotated`
      : 'rotation: not configured (nothing marked)',
  );
  return `${lines.join('\n')}\n`;
}

/** `coffer offboard`: one admin call; the server revokes, reads the audit log and reports. */
export async function offboard(
  program: Command,
  io: CliIo,
  client: CofferClient,
  principal: string,
  opts: OffboardOptions,
): Promise<void> {
  const out = output(program, io);
  const report = await client.offboard({
    principal,
    ...(opts.days !== undefined ? { days: opts.days } : {}),
    ...(opts.reason !== undefined ? { reason: opts.reason } : {}),
    ...(opts.rotate ? { rotate: true } : {}),
  });
  for (const w of report.warnings) out.note(`warning: ${w}\n`);
  out.show(offboardTable(report), report);
}
