import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The directory holding Coffer's own package.json (and `policies/`). Found by walking up from this
 * file rather than by a fixed `../`, because the same code runs as `lib/package-root.ts` (tests,
 * tsx) and as `dist/lib/package-root.js` (the built CLI and server), one directory deeper; neither
 * `lib/` nor `dist/` holds a package.json, so the first one above is the package's.
 */
export const PACKAGE_ROOT = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

/** Coffer's package.json (its version is the CLI's `--version`). */
export const PACKAGE_JSON = join(PACKAGE_ROOT, 'package.json');

function findPackageRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}
