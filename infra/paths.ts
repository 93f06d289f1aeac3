import { fileURLToPath } from 'node:url';

/** The repository root: bundling entries, the lock file and policies/ are found from here. */
export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
