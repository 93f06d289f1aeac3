import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * What the proxy does to traffic. Each chunk a client sends (with the SDK's keep-alive, roughly
 * one request) draws its fate: a reset (both sockets torn down with RST), a black hole (this
 * connection forwards nothing more, in either direction, until the client gives up), or delivery
 * after `latencyMs` (plus up to `jitterMs`). Rates are probabilities in [0, 1].
 */
export interface Faults {
  readonly latencyMs?: number;
  readonly jitterMs?: number;
  readonly resetRate?: number;
  readonly blackholeRate?: number;
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: the endpoint to give the DynamoDB client. */
  readonly url: string;
  /** Replaces the faults for the chunks that come next (open black holes stay black). */
  set(faults: Faults): void;
  /** How many chunks were reset, black-holed and delivered since the start. */
  readonly counts: { resets: number; blackholes: number; delivered: number };
  close(): Promise<void>;
}

/**
 * A TCP proxy that injects latency, connection resets and timeouts between Coffer and DynamoDB
 * Local. It works below HTTP on purpose: the faults are the ones a network gives (a response lost
 * after the engine committed, a connection that hangs), which the SDK and the store must survive.
 * `random` is injectable so that a failing run can be replayed with its seed.
 */
export async function startFaultProxy(
  target: string,
  random: () => number = Math.random,
): Promise<FaultProxy> {
  const { hostname, port } = new URL(target);
  let faults: Faults = {};
  const counts = { resets: 0, blackholes: 0, delivered: 0 };
  const sockets = new Set<Socket>();

  const server: Server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    sockets.add(client);
    sockets.add(upstream);
    let blackholed = false;
    let doomed = false;
    // Chunks keep their order: each waits for the one before it.
    let queue: Promise<void> = Promise.resolve();
    const later = (socket: Socket, chunk: Buffer, delay: number) => {
      queue = queue.then(
        () =>
          new Promise<void>((resolve) => {
            const send = () => {
              if (!blackholed && !socket.destroyed) socket.write(chunk);
              resolve();
            };
            if (delay > 0) setTimeout(send, delay);
            else send();
          }),
      );
    };
    const delay = () => (faults.latencyMs ?? 0) + Math.floor(random() * (faults.jitterMs ?? 0));
    const teardown = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };

    client.on('data', (chunk: Buffer) => {
      if (blackholed || doomed) return;
      const roll = random();
      const resetRate = faults.resetRate ?? 0;
      if (roll < resetRate) {
        counts.resets++;
        // From here the connection only dies: an answer that comes back before the reset below
        // must not reach the client, or a "reset" connection could still succeed.
        doomed = true;
        // Half of the resets let the request through first: the engine may commit, and only the
        // answer is lost. The other half never reach it.
        if (random() < 0.5) {
          upstream.write(chunk);
          setTimeout(() => {
            client.resetAndDestroy();
            upstream.resetAndDestroy();
          }, 5);
        } else {
          client.resetAndDestroy();
          upstream.resetAndDestroy();
        }
        return;
      }
      if (roll < resetRate + (faults.blackholeRate ?? 0)) {
        counts.blackholes++;
        blackholed = true;
        // Likewise, half of the black holes deliver the request and swallow the answer.
        if (random() < 0.5) upstream.write(chunk);
        return;
      }
      counts.delivered++;
      later(upstream, chunk, delay());
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!blackholed && !doomed) later(client, chunk, delay());
    });
    client.on('error', teardown);
    upstream.on('error', teardown);
    client.on('close', teardown);
    upstream.on('close', () => {
      // A black hole keeps the client waiting even after the engine hung up.
      if (!blackholed) teardown();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const listenPort = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${listenPort}`,
    counts,
    set(next) {
      faults = next;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
