import { type Command, InvalidArgumentError } from 'commander';
import type { LoginOptions } from '../actions/login.js';
import type { CliIo } from '../io.js';

/** `coffer login` and `coffer logout`. The OpenID Connect client is loaded only by them. */
export function registerLoginCommands(program: Command, io: CliIo): void {
  const json = () => program.opts<{ json?: boolean }>().json === true;

  program
    .command('login')
    .description('sign in with your identity provider (device flow, or --browser) and cache the token (0600)')
    .option('--issuer <url|alias>', 'issuer URL, or an alias from COFFER_CONFIG (env COFFER_LOGIN_ISSUER)')
    .option('--client-id <id>', 'OAuth client id of the Coffer CLI at the IdP (env COFFER_LOGIN_CLIENT_ID)')
    .option('--scope <scopes>', 'space-separated scopes (default "openid offline_access")')
    .option('--resource <uri>', 'resource indicator for the Coffer API (env COFFER_LOGIN_RESOURCE)')
    .option('--browser', 'authorization code + PKCE through a browser and a loopback redirect')
    .option('--device', 'device authorization flow (the default when the IdP supports it)')
    .option('--port <n>', 'loopback port for --browser (default: any free port)', (raw) => {
      if (!/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > 65535) {
        throw new InvalidArgumentError('--port must be a port number (1-65535)');
      }
      return Number(raw);
    })
    .option('--no-open', 'print the URL but do not start a browser')
    .option(
      '--allow-http-loopback',
      'accept an http:// issuer on 127.0.0.1/localhost (development IdPs only)',
    )
    .action(async (opts: LoginOptions) => {
      await (await import('../actions/login.js')).login(io, opts, json());
    });

  program
    .command('logout')
    .description('delete the cached login')
    .action(async () => {
      await (await import('../actions/login.js')).logout(io, json());
    });
}
