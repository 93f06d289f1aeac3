import type { Command } from 'commander';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/** `coffer whoami`: the principal, groups and attributes the server sees for this caller. */
export function registerWhoamiCommand(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('whoami')
    .description('the principal as the server sees it')
    .action(async () => {
      const me = await (await client()).whoami();
      const attributes = Object.entries(me.attributes).map(([k, v]) => `${k}=${v}`);
      output(program, io).show(
        `${me.entity}\ngroups: ${me.groups.join(', ') || '(none)'}\nauth: ${me.authMethod}\n` +
          (me.issuer ? `issuer: ${me.issuer}\n` : '') +
          (attributes.length > 0 ? `attributes: ${attributes.join(' ')}\n` : ''),
        me,
      );
    });
}
