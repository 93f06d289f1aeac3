/**
 * The terminal a CLI run talks to: its streams, environment and working directory. Passed in,
 * never taken from `process`, so that tests and embedding programs run the CLI in-process.
 */
export interface CliIo {
  readonly env: NodeJS.ProcessEnv;
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  /** Text, or bytes written exactly as they are (`coffer get` of a binary secret). */
  readonly stdout: { write(s: string | Uint8Array): unknown; isTTY?: boolean };
  readonly stderr: { write(s: string): unknown; isTTY?: boolean };
  readonly cwd: string;
}
