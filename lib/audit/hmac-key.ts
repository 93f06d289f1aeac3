import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The local audit HMAC key: 32 random bytes in `<dataDir>/keys/audit-hmac.key` (0600), made on
 * first use. It keys the hashes of sensitive request fields in audit records; whoever holds it can
 * test whether a record's query string was a given one, nobody else can.
 */
export async function openAuditHmacKey(dataDir: string): Promise<Buffer> {
  const dir = join(dataDir, 'keys');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, 'audit-hmac.key');
  try {
    const key = await readFile(file);
    if (key.length !== 32) throw new Error(`${file} must hold 32 bytes`);
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = randomBytes(32);
  try {
    await writeFile(file, key, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another process made it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return readFile(file);
    throw err;
  }
  await chmod(file, 0o600);
  return key;
}
