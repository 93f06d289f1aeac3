import { InvalidArgumentError } from 'commander';
import { VALUE_MAX_BYTES } from '../../packages/client/src/contract.js';
import type { CliIo } from './io.js';

const MAX_INPUT_BYTES = VALUE_MAX_BYTES + 1;

/** Strict, and a leading byte-order mark is kept: it is one of the value's bytes. */
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytes as text when they are UTF-8, else the bytes themselves. */
export function textOrBytes(bytes: Uint8Array): string | Uint8Array {
  try {
    return UTF8.decode(bytes);
  } catch {
    return bytes;
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string | Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += buf.length;
    // Read one byte past the limit so the server can say the value is too large.
    if (size > MAX_INPUT_BYTES * 2) throw new InvalidArgumentError('value on stdin is larger than 64 KiB');
    chunks.push(buf);
  }
  return textOrBytes(new Uint8Array(Buffer.concat(chunks)));
}

/** Reads a value without echoing it, from a terminal. */
async function prompt(io: CliIo): Promise<string> {
  const stdin = io.stdin as NodeJS.ReadStream;
  io.stderr.write('Value (input hidden): ');
  return new Promise((resolve, reject) => {
    let value = '';
    stdin.setRawMode?.(true);
    stdin.resume();
    stdin.setEncoding('utf8');
    const done = (err?: Error) => {
      stdin.setRawMode?.(false);
      stdin.pause();
      stdin.off('data', onData);
      io.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') return done();
        if (ch === '\u0003') return done(new InvalidArgumentError('cancelled'));
        if (ch === '\u007f') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}

/**
 * The value for `put`: the argument, stdin for `-` (bytes kept exactly, trailing newline
 * included), stdin when it is piped and no value is given, else a hidden prompt. Stdin that is
 * valid UTF-8 is text; anything else comes back as the bytes read.
 */
export async function readSecretInput(value: string | undefined, io: CliIo): Promise<string | Uint8Array> {
  if (value !== undefined && value !== '-') return value;
  if (value === '-' || !io.stdin.isTTY) return readAll(io.stdin);
  return prompt(io);
}
