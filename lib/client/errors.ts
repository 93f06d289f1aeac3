/** An error answered by the Coffer server (or the network), with the server's stable code. */
export class CofferClientError extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    readonly requestId?: string,
  ) {
    super(message);
    this.name = 'CofferClientError';
  }
}
