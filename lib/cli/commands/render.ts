import type { Command } from 'commander';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/** `coffer render TEMPLATE`: a config file with `{{ secret "path" }}` filled in. */
export function registerRenderCommand(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('render')
    .description('fill {{ secret "path" }} (and {{ secret "path" "field" }} for JSON values) in a template')
    .argument('<template>', 'template file, or - for stdin')
    .option('-o, --output <file>', 'write here (mode 0600, atomically) instead of stdout')
    .action(async (templateFile: string, opts: { output?: string }) => {
      const { renderTemplate } = await import('../actions/render.js');
      await renderTemplate(io, output(program, io), client, templateFile, opts);
    });
}
