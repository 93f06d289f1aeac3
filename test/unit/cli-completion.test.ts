import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
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
    expect(complete('completion', '')).toEqual(['bash', 'zsh']);
    expect(complete('help', 'back')).toEqual(['backup']);
    const commands = complete('run', '--', 'bas');
    expect(commands).toContain('bash');
    expect(new Set(commands).size).toBe(commands.length);
  });

  it('when zsh runs the zsh script, it offers commands with descriptions, options, argument words and files', async () => {
    const zshFile = join(dir, '_coffer');
    // The script minus its last line (the call zsh's completion system makes), with zsh's
    // completion builtins replaced by functions that print what they were given.
    await writeFile(zshFile, (await cli(['completion', 'zsh'])).stdout.replace(/_coffer "\$@"\n$/, ''));
    const harness = `
      source '${zshFile}'
      compadd() { [[ "$1" == "--" ]] && shift; print -r -- "compadd:$*"; }
      _describe() { print -r -- "describe:\${(j:|:)\${(P)4}}"; }
      _files() { print -r -- files; }
      _normal() { print -r -- "normal:\${words[*]}:$CURRENT"; }
      t() { words=("$@"); CURRENT=\${#words}; PREFIX="\${words[CURRENT]}"; _coffer; }
    `;
    const zsh = (...words: string[]) => {
      const call = `t coffer ${words.map((w) => `'${w}'`).join(' ')}`;
      const r = spawnSync('zsh', ['-f', '-c', `${harness}\n${call}`], { encoding: 'utf8' });
      expect(r.stderr).toBe('');
      return r.stdout.trim();
    };
    const probe = spawnSync('zsh', ['--version']);
    expect(probe.error, 'zsh is not installed (apt-get install zsh)').toBeUndefined();
    expect(zsh('')).toContain('|run:run a command with secrets as environment variables');
    expect(zsh('audit', '')).toMatch(/^describe:verify:.*\|tail:/);
    expect(zsh('completion', '')).toBe('describe:bash:bash completion script|zsh:zsh completion script');
    expect(zsh('export', '--')).toBe(
      'compadd:--to --output -o --armor --json --quiet -q --cert --key --cacert --help',
    );
    expect(zsh('run', '--prefix', 'a/', '--', 'ec')).toBe('normal:ec:1');
    expect(zsh('get', '')).toBe('files');
  });

  it('when asked for zsh, it prints a #compdef script with every command and its description', async () => {
    const r = await cli(['completion', 'zsh']);
    expect(r.code).toBe(0);
    expect(r.stdout.startsWith('#compdef coffer\n')).toBe(true);
    expect(r.stdout).toContain("'restore-backup:write the secrets of a backup bundle back through the API'");
    expect(r.stdout).toContain('_describe');
    const zsh = spawnSync('zsh', ['-n', '-c', r.stdout]);
    expect(zsh.error, 'zsh is not installed (apt-get install zsh)').toBeUndefined();
    expect(zsh.status).toBe(0);
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

  it('when asked for --version (or -V) first, it prints the package version', async () => {
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8'));
    expect(await cli(['--version'])).toEqual({ code: 0, stdout: `coffer ${version}\n`, stderr: '' });
    expect((await cli(['-V'])).stdout).toBe(`coffer ${version}\n`);
    expect(JSON.parse((await cli(['--json', '--version'])).stdout)).toEqual({ version });
  });

  it('when --json is given, command-line errors are one JSON line with code usage (exit 2), without help', async () => {
    for (const args of [
      ['--json', 'get'],
      ['get', '--json'],
      ['--json', 'put', 'a/b', 'v', '--cas', 'x'],
      ['--json', 'no-such-command'],
      ['--json', 'token', '--sub', 'not valid'],
      ['--json', 'completion', 'fish'],
    ]) {
      const r = await cli(args);
      expect(r.code).toBe(EXIT.usage);
      expect(r.stdout).toBe('');
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(JSON.parse(lines[0] as string)).toMatchObject({ error: { code: 'usage' } });
    }
    // Without --json, people get the message and the help.
    const human = await cli(['get']);
    expect(human.stderr).toContain("error: missing required argument 'path'");
    expect(human.stderr).toContain('Usage: coffer get');
  });
});
