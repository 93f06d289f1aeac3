import type { Command } from 'commander';
import type { ClientFactory } from '../credentials.js';
import type { CliIo } from '../io.js';
import { output } from '../output.js';

/** `coffer history PATH`: a secret's metadata and versions, never its values. */
export function registerHistoryCommand(program: Command, io: CliIo, client: ClientFactory): void {
  program
    .command('history')
    .description('metadata and versions of a secret (no values)')
    .argument('<path>', 'secret path')
    .action(async (path: string) => {
      const meta = await (await client()).history(path);
      const lines = [
        `${meta.path}  current version ${meta.currentVersion}${meta.deletedAt ? `  (deleted; purge at ${meta.purgeAt})` : ''}`,
        ...(meta.description ? [`description: ${meta.description}`] : []),
        ...(Object.keys(meta.tags).length > 0
          ? [
              `tags: ${Object.entries(meta.tags)
                .map(([k, v]) => `${k}=${v}`)
                .join(' ')}`,
            ]
          : []),
        // Text is the default type and says nothing; any other is shown with what it tells.
        ...(meta.type !== undefined && meta.type !== 'text' ? [`type: ${meta.type}`] : []),
        ...(meta.keypair
          ? [`key type: ${meta.keypair.keyType}`, `public key:\n${meta.keypair.publicKey.trimEnd()}`]
          : []),
        ...(meta.certificate
          ? [
              `subject: ${meta.certificate.subject.replace(/\n/g, ', ')}`,
              `issuer: ${meta.certificate.issuer.replace(/\n/g, ', ')}`,
              `SANs: ${meta.certificate.sans.join(', ')}`,
              `serial: ${meta.certificate.serial}`,
              `fingerprint (SHA-256): ${meta.certificate.fingerprint}`,
              `valid: ${meta.certificate.notBefore} to ${meta.certificate.notAfter}${meta.certificate.ca ? '  (CA)' : ''}`,
            ]
          : []),
        'VERSION  CREATED                   BY                    STATE      TYPE',
        ...meta.versions.map(
          (v) =>
            `${String(v.version).padEnd(8)} ${v.createdAt.padEnd(25)} ${(v.createdBy ?? '').padEnd(21)} ${(v.destroyed ? 'destroyed' : 'active').padEnd(10)} ${v.type ?? 'text'}`,
        ),
      ];
      output(program, io).show(`${lines.join('\n')}\n`, meta);
    });
}
