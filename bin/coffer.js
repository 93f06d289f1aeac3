#!/usr/bin/env node
// Installed entry point: runs the CLI as compiled to dist/ by `npm run build` (which `prepare` runs
// on `npm ci`, `npm install <folder or git URL>` and `npm pack`), so no TypeScript loader is needed.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/bin/coffer.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('coffer is not built: run `npm run build` in its package directory\n');
  process.exit(1);
}
await import(entry.href);
