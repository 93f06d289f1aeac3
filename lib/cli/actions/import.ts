import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { BATCH_GET_MAX_PATHS } from '../../../packages/client/src/contract.js';
import { type CofferClient, CofferClientError, clientError } from '../../../packages/client/src/index.js';
import { type Bundle, BundleError, openBundle, readIdentities } from '../bundle.js';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { folderPrefix, type Output } from '../output.js';
import { progressBar } from '../progress.js';

export interface ImportSummary {
  readonly dryRun: boolean;
  readonly created: string[];
  readonly updated: string[];
  readonly unchanged: string[];
  readonly failed: { path: string; code: string; message: string }[];
}

export interface ImportOptions {
  readonly identity?: string;
  readonly prefix?: string;
  readonly dryRun?: boolean;
}

/** Reads and opens a bundle file (or stdin for `-`) with the identity file. */
export async function loadBundle(
  io: CliIo,
  file: string,
  identityOption: string | undefined,
): Promise<Bundle> {
  const identityFile = identityOption ?? io.env.COFFER_AGE_IDENTITY;
  if (!identityFile) {
    throw new CofferClientError(
      'invalid_config',
      0,
      'name the identity that opens the bundle: --identity KEYFILE (or COFFER_AGE_IDENTITY)',
    );
  }
  const identities = await readIdentities(resolve(io.cwd, identityFile), io);
  let data: Uint8Array;
  try {
    data = file === '-' ? await readBytes(io.stdin) : await readFile(resolve(io.cwd, file));
  } catch {
    throw new BundleError('not_found', 0, `cannot read the bundle ${file}`);
  }
  return openBundle(data, identities, identityFile);
}

/**
 * Writes a bundle's secrets through the API, so the importer's own policies decide each write:
 * to their original paths, or to `prefix` + the name each had below its export root. A secret
 * whose current value is the same is left alone (no new version). Failures are collected, not
 * fatal: the summary lists them and the exit code says the import was incomplete.
 */
export async function importBundle(
  client: CofferClient,
  bundle: Bundle,
  options: ImportOptions & { io: CliIo; out: Output; label: string },
): Promise<ImportSummary> {
  const prefix = options.prefix !== undefined ? folderPrefix(options.prefix) : undefined;
  const plan = bundle.secrets.map((s) => ({
    target: prefix !== undefined ? `${prefix}${s.name}` : s.path,
    secret: s,
  }));
  const seen = new Map<string, string>();
  for (const { target, secret } of plan) {
    const other = seen.get(target);
    if (other !== undefined) {
      throw new CofferClientError(
        'invalid_request',
        0,
        `${other} and ${secret.path} would both be written to ${target}`,
      );
    }
    seen.set(target, secret.path);
  }
  const summary: ImportSummary = {
    dryRun: options.dryRun === true,
    created: [],
    updated: [],
    unchanged: [],
    failed: [],
  };
  const bar = progressBar(options.io, options.label, plan.length, !options.out.json && !options.out.quiet);
  try {
    for (let i = 0; i < plan.length; i += BATCH_GET_MAX_PATHS) {
      const chunk = plan.slice(i, i + BATCH_GET_MAX_PATHS);
      const current = await client.batchGet(chunk.map((p) => p.target));
      for (const [j, { target, secret }] of chunk.entries()) {
        const now = current[j];
        // Not readable (denied, or an invalid path) is not "absent": the write below decides.
        const exists = !(now && !now.ok && now.error.code === 'not_found');
        if (
          now?.ok &&
          now.secret.value === secret.value &&
          now.secret.valueBase64 === secret.valueBase64 &&
          (secret.type === undefined || now.secret.type === secret.type)
        ) {
          summary.unchanged.push(target);
        } else if (summary.dryRun) {
          (exists ? summary.updated : summary.created).push(target);
        } else {
          try {
            const value =
              secret.valueBase64 !== undefined
                ? new Uint8Array(Buffer.from(secret.valueBase64, 'base64'))
                : (secret.value ?? '');
            await client.put(target, value, {
              ...(secret.type !== undefined ? { type: secret.type } : {}),
              ...(secret.description !== undefined ? { description: secret.description } : {}),
              ...(secret.tags !== undefined ? { tags: secret.tags } : {}),
            });
            (exists ? summary.updated : summary.created).push(target);
          } catch (err) {
            if (!(err instanceof CofferClientError)) throw err;
            summary.failed.push({ path: target, code: err.code, message: err.message });
          }
        }
        bar.tick();
      }
    }
  } finally {
    bar.done();
    client.clearCache();
  }
  return summary;
}

/** Prints the summary and fails (exit code of the first failure) when some writes failed. */
export function reportImport(out: Output, summary: ImportSummary): void {
  const verb = summary.dryRun ? 'would be ' : '';
  const lines = [
    ...(summary.dryRun
      ? [
          ...summary.created.map((p) => `create     ${p}\n`),
          ...summary.updated.map((p) => `update     ${p}\n`),
          ...summary.unchanged.map((p) => `unchanged  ${p}\n`),
        ]
      : []),
    ...summary.failed.map((f) => `failed     ${f.path}: ${f.message} (${f.code})\n`),
    `${summary.created.length} ${verb}created, ${summary.updated.length} ${verb}updated, ` +
      `${summary.unchanged.length} unchanged, ${summary.failed.length} failed` +
      `${summary.dryRun ? ' (dry run: nothing written)' : ''}\n`,
  ];
  out.result(lines.join(''), summary);
  const first = summary.failed[0];
  if (first) {
    const total =
      summary.created.length + summary.updated.length + summary.unchanged.length + summary.failed.length;
    throw clientError(
      first.code,
      0,
      `${summary.failed.length} of ${total} secret(s) could not be written; first: ${first.path}: ${first.message}`,
    );
  }
}

async function readBytes(stream: NodeJS.ReadableStream): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

/** `coffer import FILE`: opens a bundle made for you and writes its secrets through the API. */
export async function importSecrets(
  io: CliIo,
  out: Output,
  client: ClientFactory,
  file: string,
  opts: ImportOptions,
): Promise<void> {
  const bundle = await loadBundle(io, file, opts.identity);
  const summary = await importBundle(await client(), bundle, { ...opts, io, out, label: 'import' });
  reportImport(out, summary);
}
