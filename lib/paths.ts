import {
  PATH_MAX_BYTES,
  PATH_MAX_SEGMENTS,
  pathProblem,
  prefixProblem,
} from '../packages/client/src/contract.js';
import { InvalidPathError } from './errors.js';

/** The path rules are part of the wire contract (packages/client/src/contract.ts). */
export const MAX_PATH_BYTES = PATH_MAX_BYTES;
export const MAX_SEGMENTS = PATH_MAX_SEGMENTS;

/**
 * Checks a secret path: 1 to 16 `/`-separated segments of `[A-Za-z0-9._-]`, at most 512 bytes,
 * no `.` or `..` segment, no leading or trailing `/`, no empty segment.
 *
 * @example validatePath('team-a/db/password') // returns 'team-a/db/password'
 */
export function validatePath(path: string): string {
  const problem = pathProblem(path);
  if (problem !== undefined) throw new InvalidPathError(problem);
  return path;
}

/**
 * Checks a list prefix: a string prefix of paths (may end with `/`, may be empty), using only the
 * characters a path may contain.
 */
export function validatePrefix(prefix: string): string {
  const problem = prefixProblem(prefix);
  if (problem !== undefined) throw new InvalidPathError(problem);
  return prefix;
}

/** The folders that contain a path, innermost last: `a/b/c` → [`a/`, `a/b/`]. */
export function foldersOf(path: string): string[] {
  const segments = path.split('/');
  const folders: string[] = [];
  for (let i = 1; i < segments.length; i++) folders.push(`${segments.slice(0, i).join('/')}/`);
  return folders;
}
