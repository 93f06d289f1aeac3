import type { CliIo } from './io.js';

export interface Progress {
  /** Counts `n` more items done. */
  tick(n?: number): void;
  /** Clears the bar. */
  done(): void;
}

const WIDTH = 24;
/** At most this often: a redraw per item would flood a slow terminal. */
const REDRAW_MS = 80;

const silent: Progress = { tick() {}, done() {} };

/**
 * A progress bar on stderr, only when stderr is a terminal and neither --quiet nor --json is set,
 * so that pipes, logs and scripts never see control characters.
 */
export function progressBar(io: CliIo, label: string, total: number, enabled: boolean): Progress {
  if (!enabled || !io.stderr.isTTY || total <= 0) return silent;
  let current = 0;
  let last = 0;
  const draw = () => {
    const filled = Math.round((current / total) * WIDTH);
    io.stderr.write(`\r${label} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${current}/${total}`);
  };
  draw();
  return {
    tick(n = 1) {
      current = Math.min(total, current + n);
      const now = Date.now();
      if (now - last >= REDRAW_MS || current === total) {
        last = now;
        draw();
      }
    },
    done() {
      io.stderr.write('\r\u001b[2K');
    },
  };
}

/**
 * A running count on stderr for work whose total is unknown (`label: 1200 examined`), under the
 * same conditions as the bar: a terminal, neither --quiet nor --json.
 */
export function progressCounter(io: CliIo, label: string, enabled: boolean): Progress {
  if (!enabled || !io.stderr.isTTY) return silent;
  let current = 0;
  let last = 0;
  return {
    tick(n = 1) {
      current += n;
      const now = Date.now();
      if (now - last >= REDRAW_MS) {
        last = now;
        io.stderr.write(`\r${label}: ${current} examined`);
      }
    },
    done() {
      io.stderr.write('\r\u001b[2K');
    },
  };
}
