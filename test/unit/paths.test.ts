import { describe, expect, it } from 'vitest';
import { foldersOf, validatePath, validatePrefix } from '../../lib/paths.js';

describe('validatePath', () => {
  it('when a path follows the rules, it returns it unchanged', () => {
    for (const p of ['a', 'team-a/db/password', 'A.b_c-9/x', `${'s/'.repeat(15)}t`])
      expect(validatePath(p)).toBe(p);
  });

  it('when a path has a dot segment (which URL parsing would otherwise resolve), it is refused', () => {
    // Over HTTP, WHATWG URL parsing resolves `.`/`..` (and %2E forms) before the app sees the
    // path; the service refuses them for every other caller.
    for (const p of ['.', '..', 'a/./b', 'a/../b', './a', 'a/..']) {
      expect(() => validatePath(p), p).toThrow(expect.objectContaining({ code: 'invalid_path' }));
    }
  });

  it('when a path is empty, too long, too deep or has bad characters, it is refused', () => {
    const bad = [
      '',
      '/a',
      'a/',
      'a//b',
      'a b',
      'é',
      'a\u0000b',
      'x'.repeat(513),
      `${'s/'.repeat(16)}t`,
      'a\\b',
      'a:b',
    ];
    for (const p of bad)
      expect(() => validatePath(p), JSON.stringify(p)).toThrow(
        expect.objectContaining({ code: 'invalid_path' }),
      );
  });

  it('when a prefix is given, it may end with / or be empty, but never start with /', () => {
    expect(validatePrefix('')).toBe('');
    expect(validatePrefix('team-a/')).toBe('team-a/');
    expect(validatePrefix('te')).toBe('te');
    for (const p of ['/x', 'a//b', 'a b']) expect(() => validatePrefix(p)).toThrow();
  });

  it('when a path is nested, its folders are listed outermost first', () => {
    expect(foldersOf('team-a/db/password')).toEqual(['team-a/', 'team-a/db/']);
    expect(foldersOf('top')).toEqual([]);
  });
});
