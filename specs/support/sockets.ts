/**
 * Socket and stream helpers shared by the specs: a real TCP connection to ourselves on
 * 127.0.0.1, and whole-stream reads and writes that honour backpressure.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import * as net from 'node:net';
import type { Readable, Writable } from 'node:stream';

/** Both ends of one TCP connection on 127.0.0.1. */
export interface SocketPair {
  client: net.Socket;
  server: net.Socket;
  /** Destroys both sockets and the listener, resolving once all are closed. */
  close: () => Promise<void>;
}

/** Resolves once `socket` has closed (at once if it already has). */
export async function waitClosed(socket: net.Socket): Promise<void> {
  if (!socket.closed) await once(socket, 'close');
}

/**
 * One TCP connection to ourselves on 127.0.0.1, port chosen by the OS; the listener stops
 * accepting at once. Nagle is off, as in production (`tuneSocket`): small frames must not wait
 * out Nagle + delayed ACK.
 */
export async function tcpPair(): Promise<SocketPair> {
  const listener = net.createServer();
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const { port } = listener.address() as net.AddressInfo;
  const accepted = once(listener, 'connection') as Promise<[net.Socket]>;
  const client = net.connect(port, '127.0.0.1');
  const [[server]] = await Promise.all([accepted, once(client, 'connect')]);
  client.setNoDelay(true);
  server.setNoDelay(true);
  const listenerClosed = new Promise<void>((resolve) => listener.close(() => resolve()));
  return {
    client,
    server,
    close: async () => {
      client.destroy();
      server.destroy();
      await Promise.all([waitClosed(client), waitClosed(server), listenerClosed]);
    },
  };
}

/**
 * Everything a stream delivers until 'end'. Events rather than `for await`, because Node's async
 * iterator destroys a Duplex when the iteration ends, which would reset its writable side.
 */
export function readAll(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/** Writes `data` in `chunkSize` pieces honouring backpressure, then ends the stream. */
export async function writeAll(stream: Writable, data: Buffer, chunkSize: number): Promise<void> {
  for (let offset = 0; offset < data.length; offset += chunkSize) {
    if (!stream.write(data.subarray(offset, offset + chunkSize))) await once(stream, 'drain');
  }
  stream.end();
}

/** SHA-256 of `data`, hex. */
export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
