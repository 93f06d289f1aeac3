import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { CofferClientError, type SecretValue } from '../../../packages/client/src/index.js';
import { secretField, secretText } from '../../../packages/client/src/values.js';
import { readAll } from '../bundle.js';
import type { ClientFactory } from '../credentials.js';
import { writeFileAtomic } from '../files.js';
import type { CliIo } from '../io.js';
import type { Output } from '../output.js';
import { progressBar } from '../progress.js';

/**
 * `{{ secret "path" }}`, `{{ secret "path" "field" }}` or `{{ secret "path#field" }}`, spaces free
 * inside the braces.
 */
const DIRECTIVE = /\{\{\s*secret\s+"([^"\\{}]*)"(?:\s+"([^"\\{}]*)")?\s*\}\}/y;
/** Anything that starts like a directive: a malformed one is an error, never left in the output. */
const OPENING = /\{\{\s*secret\b/g;

type Part = string | { readonly path: string; readonly field?: string };

/** Splits a template into text and directives; other `{{ … }}` text is left as it is. */
export function parseTemplate(template: string): Part[] {
  const parts: Part[] = [];
  let at = 0;
  for (const match of template.matchAll(OPENING)) {
    const start = match.index;
    if (start < at) continue;
    DIRECTIVE.lastIndex = start;
    const directive = DIRECTIVE.exec(template);
    if (!directive) {
      const line = template.slice(0, start).split('\n').length;
      throw new CofferClientError(
        'invalid_template',
        0,
        `line ${line}: expected {{ secret "path" }} or {{ secret "path" "field" }}`,
      );
    }
    parts.push(template.slice(at, start));
    // `"path#field"` says the same as `"path" "field"` (as `run --map NAME=PATH#FIELD` does):
    // `#` is never part of a path.
    const named = directive[1] as string;
    const hash = directive[2] === undefined ? named.indexOf('#') : -1;
    const path = hash === -1 ? named : named.slice(0, hash);
    const field = hash === -1 ? directive[2] : named.slice(hash + 1);
    if (path === '' || field === '') {
      const line = template.slice(0, start).split('\n').length;
      throw new CofferClientError('invalid_template', 0, `line ${line}: expected {{ secret "path#field" }}`);
    }
    parts.push({ path, ...(field !== undefined ? { field } : {}) });
    at = start + directive[0].length;
  }
  parts.push(template.slice(at));
  return parts;
}

/**
 * The text for one directive. A binary secret has no text to put in a file (`binary_value`).
 * Errors name the path and field, never the value.
 */
function valueFor(secret: SecretValue, field: string | undefined): string {
  const text = secretText(secret);
  return field === undefined ? text : secretField(secret, field);
}

async function readStream(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * `coffer render`: fills a config file template for applications that can only read files. Every
 * secret is read before anything is written; the output file appears whole (temp file + rename)
 * with mode 0600, or not at all.
 */
export async function renderTemplate(
  io: CliIo,
  out: Output,
  client: ClientFactory,
  templateFile: string,
  opts: { output?: string },
): Promise<void> {
  const template =
    templateFile === '-'
      ? await readStream(io.stdin)
      : await readFile(resolve(io.cwd, templateFile), 'utf8').catch(() => {
          throw new CofferClientError('not_found', 0, `cannot read the template ${templateFile}`);
        });
  const parts = parseTemplate(template);
  const paths = [...new Set(parts.flatMap((p) => (typeof p === 'string' ? [] : [p.path])))];
  const values = await readAll(await client(), paths, progressBar(io, 'reading', paths.length, false));
  const rendered = parts
    .map((p) => (typeof p === 'string' ? p : valueFor(values.get(p.path) as SecretValue, p.field)))
    .join('');
  if (opts.output === undefined) {
    // --json asks for a JSON answer on stdout: the rendered text is its `content`.
    if (out.json) out.result('', { content: rendered, secrets: paths });
    else io.stdout.write(rendered);
    return;
  }
  const target = resolve(io.cwd, opts.output);
  await writeFileAtomic(target, rendered, { mode: 0o600 });
  out.result(`rendered ${paths.length} secret(s) into ${opts.output} (mode 0600)\n`, {
    output: target,
    secrets: paths,
  });
}
