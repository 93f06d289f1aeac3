import { CommanderError, InvalidArgumentError } from 'commander';
import { decodeJwt } from 'jose';
import { CofferClientError } from '../../packages/client/src/errors.js';
import { DEFAULT_ADDR } from '../config.js';
import { CofferError } from '../errors.js';
import type { CliSession, SentToken } from './credentials.js';
import { EXIT, exitCodeOf, PassThroughExit } from './exit-codes.js';
import type { CliIo } from './io.js';

/** Why the server refused the token, as far as the CLI can tell without trusting it. */
function refusedTokenMessage(token: SentToken): string {
  let exp: number | undefined;
  try {
    const claims = decodeJwt(token.value);
    exp = typeof claims.exp === 'number' ? claims.exp : undefined;
  } catch {
    return `the server refused the token from ${token.source}: it is not a JWT`;
  }
  if (exp !== undefined && exp * 1000 <= Date.now()) {
    return `the token from ${token.source} expired at ${new Date(exp * 1000).toISOString()}: mint a new one with "coffer token", or run "coffer login"`;
  }
  if (token.devToken) {
    return `the server refused the token from ${token.source}: is COFFER_ADDR the server of that data dir?`;
  }
  return `the server refused the token from ${token.source} (not issued by an issuer it trusts, or for another server)`;
}

/**
 * Prints what went wrong as one line (or one JSON line with --json) on stderr and returns the
 * exit code. Loaded only when a run fails, so a successful run never pays for it.
 */
export function reportError(err: unknown, io: CliIo, json: boolean, session: CliSession): number {
  if (err instanceof PassThroughExit) return err.exitCode;
  // Thrown by an action (commander prints its own parse errors, and those are new CommanderErrors);
  // checked first because InvalidArgumentError is itself a CommanderError.
  if (err instanceof InvalidArgumentError) {
    if (json) {
      io.stderr.write(`${JSON.stringify({ error: { code: 'usage', message: err.message } })}\n`);
    } else {
      io.stderr.write(`coffer: ${err.message}\n`);
    }
    return EXIT.usage;
  }
  if (err instanceof CommanderError) {
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) {
      return EXIT.ok;
    }
    return EXIT.usage;
  }
  let code = err instanceof CofferClientError || err instanceof CofferError ? err.code : 'internal';
  let message =
    err instanceof CofferClientError || err instanceof CofferError ? err.message : 'unexpected error';
  if (err instanceof CofferClientError && err.code === 'unauthenticated' && session.token) {
    message = refusedTokenMessage(session.token);
  } else if (err instanceof CofferClientError && err.code === 'unauthenticated' && session.clientCert) {
    message = `the server refused the client certificate ${session.clientCert} (not from a CA it trusts, expired, revoked, without the clientAuth usage, or names it does not allow)`;
  } else if (err instanceof CofferClientError && err.code === 'unauthenticated' && session.iam) {
    message =
      'the request was signed with AWS credentials (COFFER_AUTH=iam) and refused: is COFFER_ADDR the API Gateway endpoint, and may this role call its /iam/v1 routes?';
  } else if (err instanceof CofferClientError && err.code === 'identity_provider_unavailable') {
    message = `the server cannot reach the identity provider that issued the token${session.token ? ` from ${session.token.source}` : ''}, and holds no recent keys of it: try again when the provider is back`;
  } else if (err instanceof CofferClientError && err.code === 'unreachable') {
    message = `${message}: is it running? Start it with "npm start", or set COFFER_ADDR`;
    if (session.endpoint?.startsWith('https:')) {
      // A TLS failure (an unknown server CA, a refused client certificate) looks the same from here.
      message += ` (an https server with a private or self-signed certificate needs --cacert)`;
    }
  } else if (err instanceof CofferClientError && err.code === 'no_route') {
    // The server has no such route at all: COFFER_ADDR points below or beside the API's base.
    message = `${session.endpoint ?? 'the server'} has no Coffer API here: set COFFER_ADDR to the server's base address, like ${DEFAULT_ADDR}`;
    code = 'invalid_config';
  } else if (err instanceof CofferClientError && err.code === 'invalid_endpoint') {
    message = `COFFER_ADDR must be an http(s) URL, like ${DEFAULT_ADDR}`;
    code = 'invalid_config';
  }
  // The server's request id lets an operator find the request in the logs and the audit trail.
  const requestId = err instanceof CofferClientError ? err.requestId : undefined;
  if (json) {
    io.stderr.write(`${JSON.stringify({ error: { code, message, ...(requestId ? { requestId } : {}) } })}\n`);
  } else {
    const tail = [code !== 'internal' ? code : '', requestId ? `request id ${requestId}` : '']
      .filter((s) => s !== '')
      .join(', ');
    io.stderr.write(`coffer: ${message}${tail ? ` (${tail})` : ''}\n`);
  }
  if (!(err instanceof CofferClientError || err instanceof CofferError)) {
    io.stderr.write(`coffer: ${(err as Error)?.name ?? 'Error'}\n`);
  }
  return exitCodeOf(code);
}
