import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { type BuildOptions, build } from 'esbuild';

/**
 * The package's `coffer/client` entry for plain Node (which cannot load .ts files): lib/client
 * bundled into one ES module, its dependencies left as imports. It is committed, so that a
 * checkout or a git dependency works without a build step; test/unit/client-package.test.ts fails
 * when it no longer matches the source (then run `npm run build:client`).
 */
export const CLIENT_ENTRY = 'dist/client/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export const clientBuildOptions: BuildOptions = {
  absWorkingDir: ROOT,
  entryPoints: ['packages/client/src/index.ts'],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  legalComments: 'none',
  banner: { js: '// Generated from packages/client/src by `npm run build:client`. Do not edit.' },
  write: false,
  outfile: CLIENT_ENTRY,
};

/** The entry's text as the source builds it now. */
export async function buildClient(): Promise<string> {
  const result = await build(clientBuildOptions);
  const [file] = result.outputFiles ?? [];
  if (!file) throw new Error('esbuild produced no output');
  return file.text;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = await buildClient();
  await writeFile(new URL(`../${CLIENT_ENTRY}`, import.meta.url), text);
  process.stdout.write(`wrote ${CLIENT_ENTRY} (${text.length} bytes)\n`);
}
