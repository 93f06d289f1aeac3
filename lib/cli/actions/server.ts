import { DEFAULT_ADDR, localSettings } from '../../config.js';
import type { CofferConfig } from '../../config-file.js';
import { type LocalPrestart, prestartLocal } from '../../local/prestart.js';
import type { LocalServer } from '../../local/server.js';
import type { CliIo } from '../io.js';

/**
 * Runs the local server until SIGINT or SIGTERM (or until the parent process goes away), with
 * request logs on stderr and the audit log on stdout.
 */
export async function runLocalServer(io: CliIo): Promise<void> {
  const settings = localSettings(io.env, io.cwd);
  // Signals are taken from the start: a Ctrl-C or SIGTERM while DynamoDB Local is starting
  // aborts the start and stops what was started, rather than leave Java running.
  const abort = new AbortController();
  let server: LocalServer | undefined;
  let config: CofferConfig = { issuers: [] };
  let stopping = false;
  let stopped: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    stopped = resolve;
  });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    io.stderr.write('Stopping Coffer…\n');
    if (server) server.stop().then(stopped, stopped);
    else abort.abort();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // `kill <pid of npm start>` ends npm without passing the signal on: when the parent goes
  // away, stop as if signalled rather than leave the server and DynamoDB Local running.
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid !== parent) stop();
  }, 1000);
  watch.unref();
  let prestart: LocalPrestart | undefined;
  try {
    // Java first, then the imports: the JVM's start (seconds) runs while the server module (the
    // SDK, Cedar's wasm, the app) and the config file load (prestart.ts).
    prestart = await prestartLocal(settings);
    const [{ startLocalServer }, { jsonLogger }, { loadConfig }] = await Promise.all([
      import('../../local/server.js'),
      import('../../log.js'),
      import('../../config-file.js'),
    ]);
    config = await loadConfig(io.env, io.cwd);
    const taken = prestart;
    // From here the server owns the prestart and releases it if its start fails.
    prestart = undefined;
    server = await startLocalServer(
      settings,
      jsonLogger((l) => io.stderr.write(`${l}\n`)),
      config,
      { auditSink: (line) => io.stdout.write(`${line}\n`), signal: abort.signal, prestart: taken },
    );
  } catch (err) {
    prestart?.release();
    if (abort.signal.aborted) return;
    throw err;
  } finally {
    if (!server) {
      clearInterval(watch);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
  }
  if (stopping) {
    // A signal came while the start was finishing.
    await server.stop();
    return;
  }
  io.stderr.write(`Coffer listening on ${server.url}\n`);
  const { DEV_ISSUER } = await import('../../authn/dev-issuer.js');
  const issuers = [`dev (${DEV_ISSUER})`, ...config.issuers.map((i) => `${i.alias} (${i.issuer})`)];
  io.stderr.write(`Token issuers: ${issuers.join(', ')}\n`);
  io.stderr.write(`Admin token: ${server.tokenFile}\n`);
  if (settings.tls) {
    // A private or self-signed server certificate: the CLI must be told which CA to trust.
    io.stderr.write(
      'HTTPS: give the CLI the CA that signed COFFER_TLS_CERT (a self-signed one: the certificate itself) in COFFER_CACERT\n',
    );
  }
  if (settings.tls?.clientCa) {
    io.stderr.write(
      `Client certificates: verified against ${settings.tls.clientCa} (COFFER_TLS_CLIENT_CA)\n`,
    );
  }
  // The variables the CLI needs to find this server and its token, when not the defaults.
  const vars = [
    ...(server.url !== DEFAULT_ADDR ? [`COFFER_ADDR=${server.url}`] : []),
    ...(settings.dataDir !== localSettings({}, io.cwd).dataDir
      ? [`COFFER_DATA_DIR=${shellQuote(settings.dataDir)}`]
      : []),
  ];
  io.stderr.write(`Try: printf 's3cret' | ${[...vars, 'npm run coffer -- put hello/world -'].join(' ')}\n`);
  const running = server;
  const failure = await Promise.race([done.then(() => undefined), running.failed]);
  if (failure === undefined) return;
  // DynamoDB Local kept exiting (the server logged why): stop, releasing the data-dir lock, and
  // exit non-zero so that whatever runs the server sees it.
  clearInterval(watch);
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  if (!stopping) {
    stopping = true;
    await running.stop();
  } else await done;
  const { StorageUnavailableError } = await import('../../store/storage-errors.js');
  throw new StorageUnavailableError();
}

/** Quotes a word for a POSIX shell when it needs it. */
function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
