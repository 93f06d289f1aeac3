import { randomBytes } from 'node:crypto';
import { link, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CofferClientError } from '../../packages/client/src/errors.js';

export interface AtomicWriteOptions {
  /** File mode of the result. Default 0600: what Coffer writes may hold secrets. */
  readonly mode?: number;
  /** Replace an existing file (default). With false, an existing file is an error. */
  readonly overwrite?: boolean;
}

/**
 * Writes a file all at once: the data goes to a temp file in the same directory (created
 * exclusively, mode 0600 from the start, so no other user ever sees a partial or readable copy),
 * is flushed, then renamed over the target (or hard-linked, to refuse an existing one). A reader
 * sees the old file or the whole new one; a failure leaves no temp file behind.
 */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const mode = options.mode ?? 0o600;
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(tmp, 'wx', mode).catch((err: unknown) => {
    throw cannotWrite(file, err);
  });
  try {
    try {
      await handle.writeFile(data);
      // open()'s mode passes through the umask, which may only take bits away; chmod makes it exact.
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.overwrite === false) {
      try {
        await link(tmp, file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
          throw new CofferClientError('file_exists', 0, `${file} already exists; not overwritten`);
        }
        throw cannotWrite(file, err);
      }
    } else {
      await rename(tmp, file).catch((err: unknown) => {
        throw cannotWrite(file, err);
      });
    }
  } catch (err) {
    throw err instanceof CofferClientError ? err : cannotWrite(file, err);
  } finally {
    await rm(tmp, { force: true });
  }
}

/** The file and the system's reason (ENOENT, EACCES, EISDIR…), never the data. */
function cannotWrite(file: string, err: unknown): CofferClientError {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  const reason =
    code === 'ENOENT'
      ? 'its directory does not exist'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'EISDIR'
          ? 'it is a directory'
          : (code ?? 'error');
  return new CofferClientError('write_failed', 0, `cannot write ${file}: ${reason}`);
}
