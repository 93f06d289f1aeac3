import type { Command } from 'commander';
import type { CliIo } from './io.js';

/** The global output flags (`--json`, `--quiet`) as one command's helpers see them. */
export interface Output {
  readonly json: boolean;
  readonly quiet: boolean;
  /** The result, a confirmation (put, rm…): JSON with --json, else the human text unless --quiet. */
  result(human: string, json: unknown): void;
  /** What the command was asked to show (ls, history, whoami): printed even with --quiet. */
  show(human: string, json: unknown): void;
  /** A note for people (stderr), silenced by --quiet and --json. */
  note(text: string): void;
}

export function output(program: Command, io: CliIo): Output {
  const opts = program.opts<{ json?: boolean; quiet?: boolean }>();
  const json = opts.json === true;
  const quiet = opts.quiet === true;
  return {
    json,
    quiet,
    result(human, value) {
      if (json) io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
      else if (!quiet) io.stdout.write(human);
    },
    show(human, value) {
      if (json) io.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
      else io.stdout.write(human);
    },
    note(text) {
      if (!json && !quiet) io.stderr.write(text);
    },
  };
}

/** Commander's collector for repeatable options (`--prefix a --prefix b`). */
export const collect = (value: string, previous: string[] | undefined): string[] => [
  ...(previous ?? []),
  value,
];

/** A folder prefix as the user means it: `team-a/dev` and `team-a/dev/` name the same folder. */
export function folderPrefix(prefix: string): string {
  const trimmed = prefix.trim();
  return trimmed === '' || trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
}
