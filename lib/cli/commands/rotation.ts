import { type Command, InvalidArgumentError } from 'commander';
import type { SecretMetadata } from '../../../packages/client/src/contract.js';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/** How long `coffer rotate --wait` waits for a pending version to be finished. */
const WAIT_MS = 60_000;
const POLL_MS = 500;

function parseEvery(value: string): string {
  if (!/^[1-9][0-9]{0,6}[smhd]$/.test(value)) {
    throw new InvalidArgumentError('must be a duration such as 30d, 12h or 90m');
  }
  return value;
}

function describeRotation(meta: SecretMetadata): string {
  const stages = meta.stages ?? { current: meta.currentVersion };
  const labels = `current ${stages.current}${stages.previous !== undefined ? `, previous ${stages.previous}` : ''}${
    stages.pending !== undefined ? `, pending ${stages.pending}` : ''
  }`;
  const r = meta.rotation;
  if (!r) return `${meta.path}  no rotation policy  (${labels})\n`;
  return (
    `${meta.path}  every ${r.every}${r.renewBefore ? `  renew ${r.renewBefore} before expiry` : ''}  next ${r.nextAt}  (${labels})\n` +
    (r.rotator
      ? `rotator: ${r.rotator.kind === 'webhook' ? `webhook ${r.rotator.url}` : `lambda ${r.rotator.arn}`}\n`
      : '') +
    (r.progress
      ? `pending version ${r.progress.version}: ${r.progress.failed ? 'failed at' : 'next step'} ${r.progress.step}\n`
      : '') +
    (r.lastRotatedAt ? `last rotated: ${r.lastRotatedAt}\n` : '') +
    (r.lastRotationError ? `last error: ${r.lastRotationError.message} at ${r.lastRotationError.at}\n` : '')
  );
}

/**
 * `coffer rotate PATH [--wait]` rotates now with the secret's own generator (Cedar `write`), through
 * its external rotator when the policy names one; `coffer rotation set|show|clear PATH` manages its
 * rotation policy (`writeMetadata`; `admin` to name a rotator with `--webhook` or `--lambda`).
 */
export function registerRotationCommands(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('rotate')
    .description("rotate a secret now with its own generator (the old value stays readable as 'previous')")
    .argument('<path>', 'secret path')
    .option('--wait', 'wait until no rotation of the secret is pending')
    .option('--revert', "make the 'previous' version current again (writes no version)")
    .action(async (path: string, opts: { wait?: boolean; revert?: boolean }) => {
      const coffer = await client();
      const out = output(program, io);
      if (opts.revert) {
        const reverted = await coffer.revert(path);
        out.result(`${reverted.path}  reverted  current version ${reverted.version}\n`, reverted);
        return;
      }
      let result = await coffer.rotate(path);
      if (opts.wait && result.state === 'pending') {
        const until = Date.now() + WAIT_MS;
        while (Date.now() < until) {
          await new Promise((r) => setTimeout(r, POLL_MS));
          const meta = await coffer.history(path);
          if (meta.stages?.pending === undefined) {
            result = {
              path,
              state: 'finished',
              stages: meta.stages ?? { current: meta.currentVersion },
              version: meta.currentVersion,
            };
            break;
          }
        }
      }
      out.result(`${result.path}  ${result.state}  version ${result.version}\n`, result);
    });

  const rotation = program.command('rotation').description("show or change a secret's rotation policy");
  rotation
    .command('set')
    .description(
      "rotate with the secret's own generator every DURATION, optionally through an external rotator",
    )
    .argument('<path>', 'secret path')
    .requiredOption('--every <duration>', 'how often: 30d, 12h, 90m (at least 1m)', parseEvery)
    .option('--now', 'make the first rotation due at once')
    .option(
      '--webhook <url>',
      'external rotator: a loopback URL called with each step (local server; Cedar admin)',
    )
    .option('--lambda <arn>', "external rotator: a Lambda function on the stack's allow-list (Cedar admin)")
    .option(
      '--renew-before <duration>',
      'certificates: renew this long before notAfter (default 30d, at most half the validity)',
      parseEvery,
    )
    .action(
      async (
        path: string,
        opts: { every: string; now?: boolean; webhook?: string; lambda?: string; renewBefore?: string },
      ) => {
        if (opts.webhook !== undefined && opts.lambda !== undefined) {
          throw new InvalidArgumentError('give --webhook or --lambda, not both');
        }
        const meta = await (await client()).setRotation(path, {
          every: opts.every,
          ...(opts.now ? { rotateImmediately: true } : {}),
          ...(opts.renewBefore !== undefined ? { renewBefore: opts.renewBefore } : {}),
          ...(opts.webhook !== undefined ? { webhook: opts.webhook } : {}),
          ...(opts.lambda !== undefined ? { lambdaArn: opts.lambda } : {}),
        });
        output(program, io).result(describeRotation(meta), meta);
      },
    );
  rotation
    .command('show')
    .description('show the rotation policy, the staging labels and the last rotation')
    .argument('<path>', 'secret path')
    .action(async (path: string) => {
      const meta = await (await client()).history(path);
      output(program, io).show(describeRotation(meta), {
        path: meta.path,
        stages: meta.stages,
        ...(meta.rotation ? { rotation: meta.rotation } : {}),
      });
    });
  rotation
    .command('clear')
    .description('remove the rotation policy (versions and labels stay)')
    .argument('<path>', 'secret path')
    .action(async (path: string) => {
      const meta = await (await client()).clearRotation(path);
      output(program, io).result(describeRotation(meta), meta);
    });
}
