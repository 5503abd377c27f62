/**
 * Protocol selection for application streams: the opener writes the protocol name first, the
 * acceptor reads it and dispatches the stream to that protocol's handler (DESIGN §5: "application
 * streams are opened by protocol name"). Optimistic: the opener may write data right behind the
 * header without waiting for an answer; an acceptor without a handler resets the stream.
 *
 * Wire format: `u8 length (1–255)`, then the name in UTF-8.
 */
import type { Duplex } from 'node:stream';
import { ConnectionClosed, ProtocolViolation } from './errors.js';

/** Longest protocol name in UTF-8 bytes. */
export const MAX_PROTOCOL_LENGTH = 255;

/**
 * Encodes the header that names a stream's protocol.
 * @throws RangeError when the name is empty or longer than 255 UTF-8 bytes.
 */
export function encodeProtocolHeader(protocol: string): Buffer {
  const name = Buffer.from(protocol, 'utf8');
  if (name.length === 0 || name.length > MAX_PROTOCOL_LENGTH) {
    throw new RangeError(`protocol name must be 1–${MAX_PROTOCOL_LENGTH} UTF-8 bytes: ${protocol.slice(0, 40)}`);
  }
  return Buffer.concat([Buffer.from([name.length]), name]);
}

/**
 * Reads the protocol header from the start of a stream; the bytes after it stay in the stream
 * for the handler (they are unshifted back).
 * @throws ProtocolViolation when the length byte is 0; ConnectionClosed when the stream ends or
 *   fails before the whole header arrived.
 */
export function readProtocolHeader(stream: Duplex): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let received: Buffer = Buffer.alloc(0);
    const cleanup = (): void => {
      stream.off('readable', onReadable);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.off('error', onError);
    };
    const onEnd = (): void => {
      cleanup();
      reject(new ConnectionClosed('stream ended before its protocol header'));
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(error);
    };
    function onReadable(): void {
      let chunk: Buffer | null;
      while ((chunk = stream.read() as Buffer | null) !== null) {
        received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
        const length = received[0] as number;
        if (length === 0) {
          cleanup();
          reject(new ProtocolViolation('empty protocol name'));
          return;
        }
        if (received.length >= 1 + length) {
          cleanup();
          const rest = received.subarray(1 + length);
          if (rest.length > 0) stream.unshift(rest);
          resolve(received.subarray(1, 1 + length).toString('utf8'));
          return;
        }
      }
    }
    stream.on('readable', onReadable);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
    stream.once('error', onError);
    onReadable();
  });
}
