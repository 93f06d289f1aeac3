import { type Command, InvalidArgumentError } from 'commander';
import { OFFBOARD_DAYS } from '../../../packages/client/src/contract.js';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';

/**
 * `coffer offboard PRINCIPAL`: revoke first, then report what the principal read (audit log), what
 * it could read, and their rotation (docs/access.md). Cedar `admin` on the root folder.
 */
export function registerOffboardCommand(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('offboard')
    .description('revoke a principal, then report what it read, what it could read, and rotation')
    .argument(
      '<principal>',
      'entity id: User::"corp:alice", Role::"arn:…", Workload::"cert:…", or a bare id (any type)',
    )
    .option(
      `--days <n>`,
      `reads in the last N days count (default ${OFFBOARD_DAYS.default})`,
      (raw: string) => {
        const days = /^\d{1,5}$/.test(raw) ? Number(raw) : Number.NaN;
        if (!(days >= OFFBOARD_DAYS.min && days <= OFFBOARD_DAYS.max)) {
          throw new InvalidArgumentError(
            `--days must be a whole number from ${OFFBOARD_DAYS.min} to ${OFFBOARD_DAYS.max}`,
          );
        }
        return days;
      },
    )
    .option('--reason <text>', 'kept in the revocation and the audit log (no secrets)')
    .option('--rotate', 'rotate now the read secrets whose rotation is configured (else marked due)')
    .action(async (principal: string, opts: OffboardOptions) => {
      await (await import('../actions/offboard.js')).offboard(program, io, await client(), principal, opts);
    });
}

export interface OffboardOptions {
  readonly days?: number;
  readonly reason?: string;
  readonly rotate?: boolean;
}
