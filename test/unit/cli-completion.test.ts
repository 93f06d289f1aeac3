import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT, exitCodeOf } from '../../lib/cli/exit-codes.js';
import { type CliIo, runCli } from '../../lib/cli/main.js';

async function cli(args: string[]) {
  const o = { stdout: '', stderr: '' };
  const io: CliIo = {
    env: {},
    cwd: tmpdir(),
    stdin: Readable.from([]),
    stdout: { write: (s: string) => (o.stdout += s) },
    stderr: { write: (s: string) => (o.stderr += s) },
  };
  return { code: await runCli(args, io), ...o };
}

let dir: string;
let bashScript: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'coffer-completion-'));
  bashScript = join(dir, 'coffer.bash');
  await writeFile(bashScript, (await cli(['completion', 'bash'])).stdout);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** What bash completes for the words typed so far (the last one being completed). */
function complete(...words: string[]): string[] {
  const array = ['coffer', ...words].map((w) => `'${w}'`).join(' ');
  const script = `source '${bashScript}'; COMP_WORDS=(${array}); COMP_CWORD=${words.length}; _coffer; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  return r.stdout.split('\n').filter(Boolean);
}

describe('coffer completion', () => {
  it('when asked for bash, it prints a script bash parses that completes commands, subcommands and options', () => {
    expect(spawnSync('bash', ['-n', bashScript]).status).toBe(0);
    expect(complete('')).toEqual(
      expect.arrayContaining(['run', 'render', 'export', 'import', 'keygen', 'backup', 'get']),
    );
    expect(complete('re')).toEqual(expect.arrayContaining(['render', 'restore', 'restore-backup']));
    expect(complete('audit', '')).toEqual(expect.arrayContaining(['verify']));
    expect(complete('run', '--')).toEqual(expect.arrayContaining(['--prefix', '--map', '--json', '--quiet']));
    expect(complete('run', '--prefix', 'a/', '--', 'bas')).toContain('bash');
    expect(complete('--json', 'imp')).toEqual(['import']);
  });

  it('when asked for zsh, it prints a #compdef script with every command and its description', async () => {
    const r = await cli(['completion', 'zsh']);
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith('#compdef coffer\n')).toBe(true);
    expect(r.stdout).toContain("'restore-backup:write the secrets of a backup bundle back through the API'");
    expect(r.stdout).toContain('_describe');
    const zsh = spawnSync('zsh', ['-n', '-c', r.stdout]);
    if (!zsh.error) expect(zsh.status).toBe(0);
  });

  it('when asked for another shell, it fails with a usage error', async () => {
    const r = await cli(['completion', 'fish']);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toContain('bash or zsh');
  });
});

describe('exit codes', () => {
  it('keeps the documented codes stable', () => {
    expect(EXIT).toMatchObject({
      ok: 0,
      error: 1,
      usage: 2,
      notFound: 3,
      unauthenticated: 4,
      forbidden: 5,
      conflict: 6,
      invalid: 7,
      unavailable: 8,
      bundle: 9,
    });
    expect(exitCodeOf('bundle_wrong_identity')).toBe(9);
    expect(exitCodeOf('bundle_invalid')).toBe(9);
    expect(exitCodeOf('timeout')).toBe(8);
    expect(exitCodeOf('something_new')).toBe(1);
  });
});
