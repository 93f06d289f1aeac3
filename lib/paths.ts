import { InvalidPathError } from './errors.js';

export const MAX_PATH_BYTES = 512;
export const MAX_SEGMENTS = 16;
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/**
 * Checks a secret path: 1 to 16 `/`-separated segments of `[A-Za-z0-9._-]`, at most 512 bytes,
 * no `.` or `..` segment, no leading or trailing `/`, no empty segment.
 *
 * @example validatePath('team-a/db/password') // returns 'team-a/db/password'
 */
export function validatePath(path: string): string {
  if (typeof path !== 'string' || path.length === 0) throw new InvalidPathError('path is empty');
  if (Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES) {
    throw new InvalidPathError(`path is longer than ${MAX_PATH_BYTES} bytes`);
  }
  const segments = path.split('/');
  if (segments.length > MAX_SEGMENTS)
    throw new InvalidPathError(`path has more than ${MAX_SEGMENTS} segments`);
  for (const segment of segments) {
    if (segment === '') throw new InvalidPathError('path has an empty segment or a leading/trailing slash');
    if (segment === '.' || segment === '..') throw new InvalidPathError('path has a "." or ".." segment');
    if (!SEGMENT.test(segment))
      throw new InvalidPathError('path segments may only contain A-Z a-z 0-9 . _ -');
  }
  return path;
}

/**
 * Checks a list prefix: a string prefix of paths (may end with `/`, may be empty), using only the
 * characters a path may contain.
 */
export function validatePrefix(prefix: string): string {
  if (prefix === '') return prefix;
  if (Buffer.byteLength(prefix, 'utf8') > MAX_PATH_BYTES) {
    throw new InvalidPathError(`prefix is longer than ${MAX_PATH_BYTES} bytes`);
  }
  if (!/^[A-Za-z0-9._\-/]+$/.test(prefix))
    throw new InvalidPathError('prefix may only contain A-Z a-z 0-9 . _ - /');
  if (prefix.startsWith('/')) throw new InvalidPathError('prefix must not start with "/"');
  if (prefix.includes('//')) throw new InvalidPathError('prefix has an empty segment');
  // Whole segments (all but the last, which may be the start of a name like `..env`) follow the
  // path rules: a `.` or `..` folder can hold nothing.
  const whole = prefix.split('/').slice(0, -1);
  if (whole.some((s) => s === '.' || s === '..')) {
    throw new InvalidPathError('prefix has a "." or ".." segment');
  }
  return prefix;
}

/** The folders that contain a path, innermost last: `a/b/c` → [`a/`, `a/b/`]. */
export function foldersOf(path: string): string[] {
  const segments = path.split('/');
  const folders: string[] = [];
  for (let i = 1; i < segments.length; i++) folders.push(`${segments.slice(0, i).join('/')}/`);
  return folders;
}
