/** Exit codes of the `coffer` CLI: defined with the error registry, whose rows give each code's. */
export { EXIT, exitCodeOf } from '../../packages/client/src/error-registry.js';

/**
 * Ends the CLI with this exit code and no message of its own: `coffer run` passes on its child's
 * code (126 not runnable, 127 not found, 128 + n killed by signal n, as shells do).
 */
export class PassThroughExit extends Error {
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
    this.name = 'PassThroughExit';
  }
}
