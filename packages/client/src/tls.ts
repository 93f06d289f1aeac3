import { Agent, request } from 'node:https';

/**
 * TLS material of a client: a client certificate and its key (mutual TLS, the certificate is the
 * caller's identity), and the CA bundle the server's certificate must chain to (a private CA, or a
 * local server's self-signed certificate). PEM, as strings or Buffers.
 */
export interface ClientTlsOptions {
  /** The client certificate (PEM; intermediates after it). Needs `key`. */
  readonly cert?: string | Buffer;
  /** The client certificate's private key (PEM, unencrypted). Needs `cert`. */
  readonly key?: string | Buffer;
  /**
   * The CAs the server's certificate must chain to, instead of Node's public roots. Given, it
   * replaces them: a public server is then refused unless its CA is in the bundle.
   */
  readonly ca?: string | Buffer;
}

/** Statuses whose responses have no body (a Response with one refuses to be built). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/**
 * A `fetch` for the client's own requests over `node:https` with the given TLS material. Global
 * fetch (undici) takes TLS options only through an undici dispatcher, which would make undici a
 * dependency of the SDK; this covers what the client uses (method, headers, a string body, an
 * abort signal) and fails like fetch does: a socket or TLS error rejects with the error (its
 * `code` says which), an aborted signal rejects with the signal's reason (a `TimeoutError`).
 * Loaded only by clients configured with `tls`.
 */
export function httpsFetch(tls: ClientTlsOptions): typeof fetch {
  // keepAlive as undici's pool: idle sockets are reused and unref'd, so they never hold a process.
  const agent = new Agent({
    keepAlive: true,
    ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
    ...(tls.key !== undefined ? { key: tls.key } : {}),
    ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
  });
  return (input, init) =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (url.protocol !== 'https:') {
        reject(new TypeError('a client with tls options sends https requests only'));
        return;
      }
      const body = init?.body ?? undefined;
      if (body !== undefined && typeof body !== 'string' && !(body instanceof Uint8Array)) {
        reject(new TypeError('only string and byte bodies are supported'));
        return;
      }
      const signal = init?.signal ?? undefined;
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const headers: Record<string, string> = {};
      new Headers(init?.headers).forEach((value, name) => {
        headers[name] = value;
      });
      const req = request(url, { method: init?.method ?? 'GET', headers, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', fail);
        res.on('end', () => {
          signal?.removeEventListener('abort', onAbort);
          const status = res.statusCode ?? 0;
          const responseHeaders = new Headers();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
            responseHeaders.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string);
          }
          try {
            resolve(
              new Response(NULL_BODY.has(status) ? null : Buffer.concat(chunks), {
                status,
                statusText: res.statusMessage ?? '',
                headers: responseHeaders,
              }),
            );
          } catch (err) {
            reject(err);
          }
        });
      });
      function fail(err: unknown): void {
        signal?.removeEventListener('abort', onAbort);
        reject(err);
      }
      function onAbort(): void {
        req.destroy();
        reject(signal?.reason);
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', fail);
      req.end(body);
    });
}
