import type { Command } from 'commander';
import type { CliIo } from '../io.js';

/** `coffer server --dev`: the local server, in the foreground until Ctrl-C. */
export function registerServerCommand(program: Command, io: CliIo): void {
  program
    .command('server')
    .description('run the local server (DynamoDB Local, local keys, dev issuer) on 127.0.0.1')
    .option('--dev', 'development mode (the only mode of the local server)')
    .action(async () => {
      // The server, DynamoDB Local and Cedar are loaded only by the command that runs them.
      const { runLocalServer } = await import('../actions/server.js');
      await runLocalServer(io);
    });
}
