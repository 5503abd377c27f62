/**
 * A minimal in-process TCP proxy on 127.0.0.1 for specs: forwards to a target, can cut every
 * forwarded connection at once (both sockets destroyed: the peer's socket is gone), and can refuse
 * new connections while "down".
 */
import * as net from 'node:net';

/** A running proxy. */
export interface TcpProxy {
  /** `127.0.0.1:port` to dial instead of the target. */
  readonly address: string;
  /** Destroys every forwarded connection (both sides). */
  cut(): void;
  /** Stops forwarding on every current connection without FIN or RST: both ends stay open (half-open). */
  stall(): void;
  /** While down, accepted connections are destroyed at once. */
  setDown(down: boolean): void;
  /** Connections accepted so far. */
  readonly accepted: number;
  close(): Promise<void>;
}

/** Starts a proxy to `target` (`host:port`). */
export async function startTcpProxy(target: string): Promise<TcpProxy> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const pairs = new Set<net.Socket>();
  const stallers = new Set<() => void>();
  let down = false;
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted++;
    if (down) {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host, port });
    pairs.add(client);
    pairs.add(upstream);
    const teardown = (): void => {
      client.destroy();
      upstream.destroy();
      pairs.delete(client);
      pairs.delete(upstream);
    };
    client.on('error', teardown).on('close', teardown);
    upstream.on('error', teardown).on('close', teardown);
    client.pipe(upstream);
    upstream.pipe(client);
    stallers.add(() => {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const bound = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${bound.port}`,
    get accepted() {
      return accepted;
    },
    stall: () => {
      for (const stall of stallers) stall();
      stallers.clear();
    },
    cut: () => {
      for (const socket of pairs) socket.destroy();
    },
    setDown: (value) => {
      down = value;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of pairs) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
