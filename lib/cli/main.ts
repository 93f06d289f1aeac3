import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { PACKAGE_JSON } from '../package-root.js';
import { registerAccessCommands } from './commands/access.js';
import { registerAuditCommands } from './commands/audit.js';
import { registerBackupCommands } from './commands/backup.js';
import { registerCompletionCommand } from './commands/completion.js';
import { registerExportCommand } from './commands/export.js';
import { registerGenerateCommand } from './commands/generate.js';
import { registerGetCommand } from './commands/get.js';
import { registerHistoryCommand } from './commands/history.js';
import { registerImportCommand } from './commands/import.js';
import { registerKeygenCommand } from './commands/keygen.js';
import { registerKeysCommands } from './commands/keys.js';
import { registerLifecycleCommands } from './commands/lifecycle.js';
import { registerLoginCommands } from './commands/login.js';
import { registerLsCommand } from './commands/ls.js';
import { registerMetaCommand } from './commands/meta.js';
import { registerOffboardCommand } from './commands/offboard.js';
import { registerPolicyCommands } from './commands/policy.js';
import { registerPutCommand } from './commands/put.js';
import { registerRenderCommand } from './commands/render.js';
import { registerRevokeCommands } from './commands/revoke.js';
import { registerRotationCommands } from './commands/rotation.js';
import { registerRunCommand } from './commands/run.js';
import { registerServerCommand } from './commands/server.js';
import { registerTokenCommand } from './commands/token.js';
import { registerWhoamiCommand } from './commands/whoami.js';
import type { ClientFactory, CliSession, TlsFlags } from './credentials.js';
import { EXIT } from './exit-codes.js';
import type { CliIo } from './io.js';

export type { CliIo } from './io.js';

/**
 * The `coffer` command tree. Registering a command costs its name, options and description only:
 * each action loads what it needs when it runs (the SDK, the local server, Cedar, the audit
 * verifier…), so `coffer get` never loads what `coffer server` or `coffer audit verify` need.
 */
export function buildProgram(io: CliIo, session: CliSession = {}): Command {
  const program = new Command('coffer');
  program
    .description('Coffer: secrets with envelope encryption, Cedar policies and a signed audit trail')
    .option('--json', 'machine-readable JSON output')
    .option('-q, --quiet', 'print nothing but requested values and errors')
    .option('--cert <file>', 'client certificate (PEM) for mutual TLS; env COFFER_CLIENT_CERT')
    .option('--key <file>', "the client certificate's private key (PEM); env COFFER_CLIENT_KEY")
    .option('--cacert <file>', "CA bundle (PEM) for the server's certificate; env COFFER_CACERT")
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });

  const client: ClientFactory = async () =>
    (await import('./credentials.js')).openClient(io, session, program.opts<TlsFlags>());

  registerServerCommand(program, io);
  registerPutCommand(program, io, client);
  registerGenerateCommand(program, io, client);
  registerGetCommand(program, io, client);
  registerLsCommand(program, io, client);
  registerLifecycleCommands(program, io, client);
  registerHistoryCommand(program, io, client);
  registerMetaCommand(program, io, client);
  registerRotationCommands(program, io, client);
  registerWhoamiCommand(program, io, client);
  registerTokenCommand(program, io);
  registerLoginCommands(program, io);
  registerAuditCommands(program, io);
  registerPolicyCommands(program, io, client);
  registerRevokeCommands(program, io, client);
  registerAccessCommands(program, io, client);
  registerOffboardCommand(program, io, client);
  registerRunCommand(program, io, client);
  registerRenderCommand(program, io, client);
  registerExportCommand(program, io, client);
  registerImportCommand(program, io, client);
  registerKeygenCommand(program, io);
  registerKeysCommands(program, io, client);
  registerBackupCommands(program, io, client);
  registerCompletionCommand(program, io);

  return program;
}

/**
 * With --json, command-line errors too are one JSON line on stderr (`usage`, exit 2), without
 * the help text that follows them for people.
 */
function jsonUsageErrors(program: Command, io: CliIo): void {
  const walk = (cmd: Command) => {
    cmd.showHelpAfterError(false);
    cmd.configureOutput({
      ...cmd.configureOutput(),
      outputError: (text) => {
        const message = text.replace(/^error: /, '').trim();
        io.stderr.write(`${JSON.stringify({ error: { code: 'usage', message } })}\n`);
      },
    });
    for (const sub of cmd.commands) walk(sub);
  };
  walk(program);
}

/** Runs the CLI and returns its exit code. Errors print one line (or JSON with --json). */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  // Only as the first word: `get PATH --version N` is a secret's version, not coffer's.
  if (argv[0] === '--version' || argv[0] === '-V' || (argv[0] === '--json' && argv[1] === '--version')) {
    const { version } = JSON.parse(await readFile(PACKAGE_JSON, 'utf8')) as {
      version: string;
    };
    io.stdout.write(argv[0] === '--json' ? `${JSON.stringify({ version })}\n` : `coffer ${version}\n`);
    return EXIT.ok;
  }
  const session: CliSession = {};
  const program = buildProgram(io, session);
  const dashes = argv.indexOf('--');
  if ((dashes === -1 ? argv : argv.slice(0, dashes)).includes('--json')) jsonUsageErrors(program, io);
  try {
    await program.parseAsync(argv as string[], { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    // Error presentation is loaded only when a run fails.
    const { reportError } = await import('./error-report.js');
    return reportError(err, io, program.opts<{ json?: boolean }>().json === true, session);
  }
}
