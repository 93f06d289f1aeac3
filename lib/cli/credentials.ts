import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { parseEndpoint } from '../../packages/client/src/endpoint.js';
import { type CofferClient, createClient } from '../../packages/client/src/index.js';
import { DEFAULT_ADDR, localSettings } from '../config.js';
import { CofferError } from '../errors.js';
import { isLoopbackUrl } from '../loopback.js';
import type { CliIo } from './io.js';
import { loginCacheToken } from './login-cache.js';

/** The token the CLI sent and where it came from, to explain a refusal. */
export interface SentToken {
  readonly value: string;
  readonly source: string;
  /** The token is the local data dir's dev-token. */
  readonly devToken?: boolean;
}

/** What the commands of one CLI run share with the error printer. */
export interface CliSession {
  token?: SentToken;
  endpoint?: string;
  /** The requests were signed with AWS credentials (COFFER_AUTH=iam). */
  iam?: boolean;
}

/** Makes the run's client on first use: commands that never call the server never resolve a token. */
export type ClientFactory = () => Promise<CofferClient>;

/** No token anywhere: said before any request is made. */
class NoTokenError extends CofferError {
  static override readonly code = 'unauthenticated';
}

/**
 * The token the CLI sends: `COFFER_TOKEN`, else the login cache (see `coffer login`), else the
 * local data dir's dev token, which is only ever sent to a loopback server (it belongs to the
 * local server; a remote one would refuse it anyway, and need not see it).
 */
async function resolveToken(io: CliIo, endpoint: string, url: URL): Promise<SentToken | undefined> {
  if (io.env.COFFER_TOKEN?.trim()) return { value: io.env.COFFER_TOKEN.trim(), source: 'COFFER_TOKEN' };
  const cached = await loginCacheToken(io.env, endpoint);
  if (cached) return { value: cached, source: 'the coffer login cache' };
  if (!isLoopbackUrl(url)) return undefined;
  const file = join(localSettings(io.env, io.cwd).dataDir, 'dev-token');
  try {
    const value = (await readFile(file, 'utf8')).trim();
    return value ? { value, source: file, devToken: true } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A client for the server the environment names (`COFFER_ADDR`, else the local default), with
 * the credentials it names: AWS SigV4 when `COFFER_AUTH=iam`, else a bearer token. Records in
 * `session` what was used, so that a refusal can be explained.
 */
export async function openClient(io: CliIo, session: CliSession): Promise<CofferClient> {
  const endpoint = io.env.COFFER_ADDR || DEFAULT_ADDR;
  session.endpoint = endpoint;
  const auth = (io.env.COFFER_AUTH ?? '').trim().toLowerCase();
  if (auth === 'iam') {
    // An AWS workload (EC2, ECS, Lambda, CodeBuild…): SigV4 with the default credential chain on
    // /iam/v1, so it needs only its role. The region comes from the execute-api host name, else
    // from AWS_REGION / AWS_DEFAULT_REGION.
    session.iam = true;
    const region = io.env.AWS_REGION || io.env.AWS_DEFAULT_REGION;
    return createClient({ endpoint, auth: { iam: region ? { region } : {} } });
  }
  if (auth !== '' && auth !== 'token') {
    throw new InvalidArgumentError('COFFER_AUTH must be "token" (the default) or "iam"');
  }
  // A malformed COFFER_ADDR is the problem to report, before any token is looked for.
  const url = parseEndpoint(endpoint);
  const token = await resolveToken(io, endpoint, url);
  if (!token) {
    throw new NoTokenError(
      isLoopbackUrl(url)
        ? `no token: set COFFER_TOKEN, run "coffer login", or start the local server (npm start), which writes ${join(localSettings(io.env, io.cwd).dataDir, 'dev-token')} (looked there; for another data dir set COFFER_DATA_DIR to it)`
        : `no token: set COFFER_TOKEN, run "coffer login" (the local dev-token is only sent to a server on this machine)`,
    );
  }
  session.token = token;
  return createClient({ endpoint, auth: { token: token.value } });
}
