/**
 * TCP over `node:net`: addresses, dialing with abort, listening.
 *
 * Timeouts are not decided here: the connection machine aborts a dial through its
 * `connectTimeout` delay (DESIGN §2), so all time stays on the injected clock.
 */
import * as net from 'node:net';
import type { Server, Socket } from 'node:net';
import { DialFailed, ProtocolViolation } from './errors.js';
import { guardErrors } from './transport.js';
import type { RawConnection, Transport } from './transport.js';

/** A TCP endpoint. `host` is an IPv4 or IPv6 literal or a host name; `port` is 0–65535. */
export interface TcpAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * Parses `host:port` (IPv4 or name) or `[v6]:port`.
 * @param options.listen accept port 0 (a listen address: the OS picks the port).
 * @throws ProtocolViolation when the text is not an address with a port in 1–65535 (0–65535 with
 *   `listen`); it usually comes from a remote handshake payload or from configuration.
 */
export function parseAddress(text: string, options: { listen?: boolean } = {}): TcpAddress {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(text);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (host === undefined || !Number.isInteger(port) || port < (options.listen ? 0 : 1) || port > 65535) {
    throw new ProtocolViolation(`not a host:port address: ${JSON.stringify(text.slice(0, 100))}`);
  }
  return { host, port };
}

/** Formats an address as `host:port`, bracketing IPv6 literals: `[::1]:4001`. */
export function formatAddress(address: TcpAddress): string {
  return net.isIPv6(address.host) ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/** Applies the socket options every peerwarden connection uses (no Nagle delay: pings and small frames go out at once). */
export function tuneSocket(socket: Socket): void {
  socket.setNoDelay(true);
}

/**
 * Opens a TCP connection.
 * @param signal aborting it destroys the half-open socket and rejects with DialFailed.
 * @returns the connected socket, tuned with {@link tuneSocket}.
 * @throws DialFailed on refusal, unreachable host, reset or abort (`cause` holds the socket error).
 */
export function dialTcp(address: TcpAddress, signal?: AbortSignal): Promise<Socket> {
  const text = formatAddress(address);
  return new Promise<Socket>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new DialFailed(text, { cause: signal.reason }));
      return;
    }
    const socket = net.connect({ host: address.host, port: address.port });
    const onAbort = (): void => fail(signal?.reason ?? new Error('aborted'));
    const cleanup = (): void => {
      socket.off('connect', onConnect);
      socket.off('error', fail);
      signal?.removeEventListener('abort', onAbort);
    };
    function onConnect(): void {
      cleanup();
      tuneSocket(socket);
      guardErrors(socket);
      resolve(socket);
    }
    function fail(error: unknown): void {
      cleanup();
      socket.destroy();
      reject(new DialFailed(text, { cause: error }));
    }
    socket.once('connect', onConnect);
    socket.once('error', fail);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** A listening TCP server. */
export interface TcpListener {
  /** The bound address (the OS-picked port when 0 was asked for). */
  readonly address: TcpAddress;
  /** Stops accepting and destroys every socket not yet handed over; resolves when the server is closed. */
  close(): Promise<void>;
}

/**
 * Listens on `address` (port 0: the OS picks) and hands each accepted socket, tuned, to `onSocket`.
 * @throws the listen error (e.g. EADDRINUSE) as the rejection.
 */
export function listenTcp(address: TcpAddress, onSocket: (socket: Socket) => void): Promise<TcpListener> {
  const server: Server = net.createServer({ noDelay: true, pauseOnConnect: false }, (socket) => {
    tuneSocket(socket);
    guardErrors(socket);
    onSocket(socket);
  });
  // A failing accept (EMFILE under a flood) must not crash the node: the server keeps listening.
  const onError = (): void => undefined;
  return new Promise<TcpListener>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address.host, port: address.port }, () => {
      server.off('error', reject);
      server.on('error', onError);
      const bound = server.address();
      const port = typeof bound === 'object' && bound ? bound.port : address.port;
      resolve({
        address: { host: address.host, port },
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
          }),
      });
    });
  });
}

/** Wraps a connected socket as a transport {@link RawConnection}. */
export function rawTcpConnection(socket: Socket): RawConnection {
  return {
    stream: socket,
    remoteAddress: formatAddress({ host: socket.remoteAddress ?? '?', port: socket.remotePort ?? 0 }),
    bytesRead: () => socket.bytesRead,
  };
}

/**
 * The TCP {@link Transport} over `node:net`: {@link dialTcp} and {@link listenTcp} with text
 * addresses. Sockets are tuned with {@link tuneSocket}.
 */
export const tcpTransport: Transport = {
  async dial(address, signal) {
    return rawTcpConnection(await dialTcp(parseAddress(address), signal));
  },
  async listen(address, onConnection) {
    const listener = await listenTcp(parseAddress(address, { listen: true }), (socket) =>
      onConnection(rawTcpConnection(socket)),
    );
    return { address: formatAddress(listener.address), close: () => listener.close() };
  },
};
