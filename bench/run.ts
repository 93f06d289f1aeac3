/**
 * `npm run bench`: runs every bench/*.bench.ts, one after the other (they measure time; running
 * them side by side would measure each other). Each file exports `run()` returning rows, and may
 * export `markdown(rows)` to print them; otherwise the rows are printed as a generic table.
 *
 *   npm run bench               every benchmark
 *   npm run bench -- authz      only files whose name contains "authz"
 *   npm run bench -- cli        CLI start-up against `node -e 0` (runs the build: `npm run build`)
 */
import { readdir } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';

type Row = Record<string, unknown>;

interface BenchModule {
  run(): Promise<readonly Row[]>;
  markdown?(rows: readonly Row[]): string;
}

function table(rows: readonly Row[]): string {
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return [
    `| ${columns.join(' | ')} |`,
    `|${columns.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${columns.map((c) => String(r[c] ?? '')).join(' | ')} |`),
  ].join('\n');
}

async function main(filters: readonly string[]): Promise<number> {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const dir = fileURLToPath(new URL('.', import.meta.url));
  const files = (await readdir(dir))
    .filter((f) => f.endsWith('.bench.ts'))
    .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
    .sort();
  if (files.length === 0) {
    process.stderr.write(`no benchmark matches ${filters.join(', ')}\n`);
    return 2;
  }
  let failed = 0;
  for (const file of files) {
    process.stdout.write(`\n## ${file}\n\n`);
    const started = Date.now();
    try {
      const mod = (await import(pathToFileURL(`${dir}${file}`).href)) as BenchModule;
      if (typeof mod.run !== 'function') throw new Error('exports no run()');
      const rows = await mod.run();
      process.stdout.write(`${mod.markdown ? mod.markdown(rows) : table(rows)}\n`);
      process.stdout.write(
        `\n(${file}: ${Math.round((Date.now() - started) / 1000)} s, node ${process.version})\n`,
      );
    } catch (err) {
      failed++;
      process.stderr.write(`${file} failed: ${(err as Error).message}\n`);
    }
  }
  return failed > 0 ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
