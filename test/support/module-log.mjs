// `node --import ./test/support/module-log.mjs …` appends every module the process loads to the
// file named by COFFER_MODULE_LOG: ES modules as the loader sees them (a hook in the loader
// thread), CommonJS modules from the require cache at exit (require() inside CommonJS code does
// not pass through the ES module hooks).
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { isMainThread } from 'node:worker_threads';

let logFile;

/** Loader thread: receives the file name from register(). */
export function initialize(data) {
  logFile = data?.file;
}

/** Loader thread: records each module as it is loaded. */
export async function load(url, context, nextLoad) {
  if (logFile) appendFileSync(logFile, `${url}\n`);
  return nextLoad(url, context);
}

if (isMainThread && process.env.COFFER_MODULE_LOG) {
  const file = process.env.COFFER_MODULE_LOG;
  register(import.meta.url, { data: { file } });
  const { cache } = createRequire(import.meta.url);
  process.on('exit', () => {
    const paths = Object.keys(cache);
    if (paths.length > 0) appendFileSync(file, `${paths.join('\n')}\n`);
  });
}
