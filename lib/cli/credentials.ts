import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError } from 'commander';
import { parseEndpoint } from '../../packages/client/src/endpoint.js';
import { type ClientTlsOptions, type CofferClient, createClient } from '../../packages/client/src/index.js';
import { DEFAULT_ADDR, localSettings } from '../config.js';
import { CofferError, ConfigError } from '../errors.js';
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
  /** The client certificate file presented (--cert / COFFER_CLIENT_CERT). */
  clientCert?: string;
}

/** The global TLS options (`--cert`, `--key`, `--cacert`): file paths, each over its variable. */
export interface TlsFlags {
  readonly cert?: string;
  readonly key?: string;
  readonly cacert?: string;
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

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new ConfigError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException)?.code ?? 'error'}`);
  }
}

/**
 * The TLS material the flags or the environment name: a client certificate and key
 * (`--cert`/`COFFER_CLIENT_CERT`, `--key`/`COFFER_CLIENT_KEY`) and a CA bundle for the server's
 * certificate (`--cacert`/`COFFER_CACERT`). Files are read only when named.
 */
async function resolveTls(
  io: CliIo,
  flags: TlsFlags,
): Promise<{ tls?: ClientTlsOptions; certPath?: string }> {
  const cert = flags.cert || io.env.COFFER_CLIENT_CERT || undefined;
  const key = flags.key || io.env.COFFER_CLIENT_KEY || undefined;
  const ca = flags.cacert || io.env.COFFER_CACERT || undefined;
  if ((cert === undefined) !== (key === undefined)) {
    throw new InvalidArgumentError(
      'a client certificate needs its key: give both --cert and --key (COFFER_CLIENT_CERT, COFFER_CLIENT_KEY)',
    );
  }
  if (cert === undefined && ca === undefined) return {};
  const tls: ClientTlsOptions = {
    ...(cert !== undefined ? { cert: await readPem(cert, 'the client certificate') } : {}),
    ...(key !== undefined ? { key: await readPem(key, 'the client key') } : {}),
    ...(ca !== undefined ? { ca: await readPem(ca, 'the CA bundle') } : {}),
  };
  return { tls, ...(cert !== undefined ? { certPath: cert } : {}) };
}

/**
 * A client for the server the environment names (`COFFER_ADDR`, else the local default), with
 * the credentials it names: AWS SigV4 when `COFFER_AUTH=iam`, else a bearer token. Records in
 * `session` what was used, so that a refusal can be explained.
 */
export async function openClient(
  io: CliIo,
  session: CliSession,
  flags: TlsFlags = {},
): Promise<CofferClient> {
  const endpoint = io.env.COFFER_ADDR || DEFAULT_ADDR;
  session.endpoint = endpoint;
  const auth = (io.env.COFFER_AUTH ?? '').trim().toLowerCase();
  const { tls, certPath } = await resolveTls(io, flags);
  if (tls && parseEndpoint(endpoint).protocol !== 'https:') {
    throw new InvalidArgumentError(
      `--cert, --key and --cacert (COFFER_CLIENT_CERT, COFFER_CLIENT_KEY, COFFER_CACERT) need an https COFFER_ADDR, got ${endpoint}`,
    );
  }
  if (auth === 'iam') {
    if (certPath !== undefined) {
      throw new InvalidArgumentError('COFFER_AUTH=iam and a client certificate do not go together');
    }
    // An AWS workload (EC2, ECS, Lambda, CodeBuild…): SigV4 with the default credential chain on
    // /iam/v1, so it needs only its role. The region comes from the execute-api host name, else
    // from AWS_REGION / AWS_DEFAULT_REGION.
    session.iam = true;
    const region = io.env.AWS_REGION || io.env.AWS_DEFAULT_REGION;
    return createClient({ endpoint, auth: { iam: region ? { region } : {} }, ...(tls ? { tls } : {}) });
  }
  if (auth !== '' && auth !== 'token') {
    throw new InvalidArgumentError('COFFER_AUTH must be "token" (the default) or "iam"');
  }
  // A malformed COFFER_ADDR is the problem to report, before any token is looked for.
  const url = parseEndpoint(endpoint);
  if (certPath !== undefined && tls) {
    session.clientCert = certPath;
    // The certificate is the identity. Only a token asked for by name goes with it (and then wins
    // on the server): the login cache's or the dev token would silently replace the certificate.
    const explicit = io.env.COFFER_TOKEN?.trim();
    if (!explicit) return createClient({ endpoint, tls });
    session.token = { value: explicit, source: 'COFFER_TOKEN' };
    return createClient({ endpoint, auth: { token: explicit }, tls });
  }
  const token = await resolveToken(io, endpoint, url);
  if (!token) {
    throw new NoTokenError(
      isLoopbackUrl(url)
        ? `no token: set COFFER_TOKEN, run "coffer login", or start the local server (npm start), which writes ${join(localSettings(io.env, io.cwd).dataDir, 'dev-token')} (looked there; for another data dir set COFFER_DATA_DIR to it)`
        : `no token: set COFFER_TOKEN, run "coffer login" (the local dev-token is only sent to a server on this machine)`,
    );
  }
  session.token = token;
  return createClient({ endpoint, auth: { token: token.value }, ...(tls ? { tls } : {}) });
}
