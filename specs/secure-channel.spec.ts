/**
 * SecureChannel over real TCP sockets on 127.0.0.1: integrity of large transfers, frame sizes on
 * the wire, corruption handling, backpressure and half-close.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type net from 'node:net';
import { describe, it } from 'node:test';
import { ProtocolViolation } from '../transport/errors.js';
import { createNodeNonce, PROTOCOL_VERSION, type HandshakePayload } from '../transport/handshake-payload.js';
import { nobleCrypto } from '../transport/noise/crypto.js';
import { handshakeInitiator, handshakeResponder, type HandshakeResult } from '../transport/noise/handshake.js';
import { FRAME_LENGTH_BYTES, MAX_FRAME_CIPHERTEXT, SecureChannel } from '../transport/secure-channel.js';
import { tcpPair } from './support/sockets.js';

const EMPTY = new Uint8Array(0);

function payload(): HandshakePayload {
  return { protocolVersion: PROTOCOL_VERSION, featureFlags: 0, privacyFlags: 0, nodeNonce: createNodeNonce(), listenAddresses: [] };
}

interface Pair {
  /** Wraps a socket in a SecureChannel that `close` destroys before the sockets. */
  channel: (side: 'client' | 'server', handshake?: HandshakeResult) => SecureChannel;
  client: net.Socket;
  server: net.Socket;
  dialer: HandshakeResult;
  listener: HandshakeResult;
  close: () => Promise<void>;
}

/** Two TCP sockets on 127.0.0.1 with a completed handshake (client = initiator). */
async function handshakenPair(): Promise<Pair> {
  const { client, server, close: closeSockets } = await tcpPair();
  const channels: SecureChannel[] = [];
  const close = async (): Promise<void> => {
    for (const channel of channels) channel.destroy();
    await closeSockets();
  };
  const [dialer, listener] = await Promise.all([
    handshakeInitiator(client, { staticKeyPair: nobleCrypto.generateKeyPair(), payload: payload() }),
    handshakeResponder(server, { staticKeyPair: nobleCrypto.generateKeyPair(), payload: payload() }),
  ]);
  const channel = (side: 'client' | 'server', handshake?: HandshakeResult): SecureChannel => {
    const created =
      side === 'client' ? new SecureChannel(client, handshake ?? dialer) : new SecureChannel(server, handshake ?? listener);
    channels.push(created);
    return created;
  };
  return { channel, client, server, dialer, listener, close };
}

/**
 * Reads a channel to its end; SHA-256 and byte count of everything read. Uses 'data'/'end' rather
 * than `for await`, which would destroy the whole Duplex (our writable side too) when it finishes.
 */
function drain(channel: SecureChannel): Promise<{ sha256: string; length: number }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let length = 0;
    channel.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      length += chunk.length;
    });
    channel.once('end', () => resolve({ sha256: hash.digest('hex'), length }));
    channel.once('error', reject);
  });
}

/** Writes `data` in random-size pieces (1 byte .. 200 KB), honouring backpressure, then ends. */
async function writeInPieces(channel: SecureChannel, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const roll = randomBytes(4).readUInt32BE(0);
    const size = roll % 8 === 0 ? 1 + (roll % 16) : 1 + (roll % 200_000);
    const piece = data.subarray(offset, offset + size);
    offset += piece.length;
    if (!channel.write(piece)) await once(channel, 'drain');
  }
  const finished = once(channel, 'finish');
  channel.end();
  await finished;
}

/** Watches raw wire bytes and records every frame length (a passive 'data' listener). */
function tapFrames(socket: net.Socket): { lengths: number[] } {
  const record = { lengths: [] as number[] };
  let header = Buffer.alloc(0);
  let bodyLeft = 0;
  socket.on('data', (chunk: Buffer) => {
    let offset = 0;
    while (offset < chunk.length) {
      if (bodyLeft > 0) {
        const n = Math.min(bodyLeft, chunk.length - offset);
        bodyLeft -= n;
        offset += n;
        continue;
      }
      const n = Math.min(FRAME_LENGTH_BYTES - header.length, chunk.length - offset);
      header = Buffer.concat([header, chunk.subarray(offset, offset + n)]);
      offset += n;
      if (header.length === FRAME_LENGTH_BYTES) {
        bodyLeft = header.readUInt16BE(0);
        record.lengths.push(bodyLeft);
        header = Buffer.alloc(0);
      }
    }
  });
  return record;
}

function rawFrame(body: Uint8Array): Buffer {
  const out = Buffer.alloc(FRAME_LENGTH_BYTES + body.length);
  out.writeUInt16BE(body.length, 0);
  out.set(body, FRAME_LENGTH_BYTES);
  return out;
}

describe('SecureChannel over TCP on 127.0.0.1', () => {
  it('carries 8 MiB of random-size writes intact, in frames of at most 65535 + 2 bytes', async () => {
    const pair = await handshakenPair();
    try {
      const wire = tapFrames(pair.server);
      const clientChannel = pair.channel('client');
      const serverChannel = pair.channel('server');
      assert.equal(serverChannel.remotePeerId, pair.listener.remotePeerId);
      const upstream = randomBytes(8 * 1024 * 1024);
      const downstream = randomBytes(1024 * 1024);
      const [received, receivedBack] = await Promise.all([
        drain(serverChannel),
        drain(clientChannel),
        writeInPieces(clientChannel, upstream),
        writeInPieces(serverChannel, downstream),
      ]);
      assert.equal(received.length, upstream.length);
      assert.equal(received.sha256, createHash('sha256').update(upstream).digest('hex'));
      assert.equal(receivedBack.sha256, createHash('sha256').update(downstream).digest('hex'));
      assert.ok(wire.lengths.length >= Math.ceil(upstream.length / (MAX_FRAME_CIPHERTEXT - 16)));
      for (const length of wire.lengths) assert.ok(length >= 16 && length <= MAX_FRAME_CIPHERTEXT, `frame of ${length} bytes`);
    } finally {
      await pair.close();
    }
  });

  it("reports the peer's static key and the handshake hash, equal on both sides, as fresh copies", async () => {
    const pair = await handshakenPair();
    try {
      const client = pair.channel('client');
      const server = pair.channel('server');
      assert.deepEqual(client.remotePublicKey, pair.dialer.remotePublicKey);
      assert.deepEqual(server.remotePublicKey, pair.listener.remotePublicKey);
      assert.notDeepEqual(client.remotePublicKey, server.remotePublicKey);
      assert.equal(client.handshakeHash.length, 32);
      assert.deepEqual(client.handshakeHash, pair.dialer.handshakeHash);
      assert.deepEqual(client.handshakeHash, server.handshakeHash);
      // A caller that writes into what it got does not change the channel's.
      client.handshakeHash.fill(0);
      client.remotePublicKey.fill(0);
      assert.deepEqual(client.handshakeHash, pair.dialer.handshakeHash);
      assert.deepEqual(client.remotePublicKey, pair.dialer.remotePublicKey);
    } finally {
      await pair.close();
    }
  });

  it('delivers the handshake leftover before bytes from the socket', async () => {
    const pair = await handshakenPair();
    try {
      // An early frame as if it had arrived together with handshake message 3.
      const early = rawFrame(pair.dialer.send.encryptWithAd(EMPTY, Buffer.from('early ')));
      const clientChannel = pair.channel('client');
      const serverChannel = pair.channel('server', { ...pair.listener, leftover: early });
      clientChannel.end('late');
      const received = await drain(serverChannel);
      assert.equal(received.sha256, createHash('sha256').update('early late').digest('hex'));
    } finally {
      await pair.close();
    }
  });

  it('destroys the channel with ProtocolViolation and closes the socket on a corrupted ciphertext', async () => {
    const pair = await handshakenPair();
    try {
      const serverChannel = pair.channel('server');
      const good = pair.dialer.send.encryptWithAd(EMPTY, Buffer.from('good'));
      const bad = pair.dialer.send.encryptWithAd(EMPTY, Buffer.from('tampered'));
      bad[3] = (bad[3] ?? 0) ^ 0x40;
      const firstData = once(serverChannel, 'data') as Promise<[Buffer]>;
      const failed = once(serverChannel, 'error') as Promise<[Error]>;
      const peerSawClose = once(pair.client, 'close');
      pair.client.write(Buffer.concat([rawFrame(good), rawFrame(bad)]));
      assert.deepEqual((await firstData)[0], Buffer.from('good'));
      const [error] = await failed;
      assert.ok(error instanceof ProtocolViolation);
      assert.equal(pair.server.destroyed, true);
      await peerSawClose;
    } finally {
      await pair.close();
    }
  });

  it('rejects a frame too short for its tag and a connection ending mid-frame with ProtocolViolation', async () => {
    for (const hostile of [rawFrame(new Uint8Array(15)), Buffer.from([0x01, 0x00, 1, 2, 3])]) {
      const pair = await handshakenPair();
      try {
        const serverChannel = pair.channel('server');
        serverChannel.resume();
        const failed = once(serverChannel, 'error') as Promise<[Error]>;
        pair.client.end(hostile);
        const [error] = await failed;
        assert.ok(error instanceof ProtocolViolation, String(error));
        assert.equal(pair.server.destroyed, true);
      } finally {
        await pair.close();
      }
    }
  });

  it('applies backpressure end to end: a peer that does not read stops the writer with bounded buffers', async () => {
    const pair = await handshakenPair();
    try {
      const clientChannel = pair.channel('client');
      const serverChannel = pair.channel('server');
      const chunk = randomBytes(64 * 1024);
      let written = 0;
      let accepted = true;
      // Nobody reads serverChannel: kernel buffers fill, then the socket, then the channel.
      for (let i = 0; i < 4096 && accepted; i++) {
        accepted = clientChannel.write(chunk);
        written += chunk.length;
      }
      assert.equal(accepted, false, 'write() must return false once the peer stops reading');
      assert.ok(written < 128 * 1024 * 1024, `wrote ${written} bytes before backpressure`);
      assert.ok(clientChannel.writableLength <= clientChannel.writableHighWaterMark + chunk.length, `channel holds ${clientChannel.writableLength}`);
      assert.ok(pair.client.writableLength <= 2 * 1024 * 1024, `socket holds ${pair.client.writableLength}`);

      // A slow reader: once it pauses, the channel pauses the socket with a bounded readable buffer.
      const socketPaused = once(pair.server, 'pause');
      let firstChunk = 0;
      serverChannel.once('data', (data: Buffer) => {
        firstChunk = data.length;
        serverChannel.pause();
      });
      serverChannel.resume();
      await socketPaused;
      assert.ok(serverChannel.readableLength <= serverChannel.readableHighWaterMark + MAX_FRAME_CIPHERTEXT);

      // Reading everything releases the writer.
      const writerDrained = once(clientChannel, 'drain');
      const received = drain(serverChannel);
      serverChannel.resume(); // a 'data' listener does not undo an explicit pause()
      await writerDrained;
      clientChannel.end();
      assert.equal(firstChunk + (await received).length, written);
    } finally {
      await pair.close();
    }
  });

  it('half-closes in both directions', async () => {
    for (const firstToEnd of ['client', 'server'] as const) {
      const pair = await handshakenPair();
      try {
        const clientChannel = pair.channel('client');
        const serverChannel = pair.channel('server');
        const [ender, other] = firstToEnd === 'client' ? [clientChannel, serverChannel] : [serverChannel, clientChannel];
        const otherReceived = drain(other);
        ender.end('first half');
        assert.equal((await otherReceived).sha256, createHash('sha256').update('first half').digest('hex'));
        // `other` saw the end and can still write back; `ender` still reads.
        const enderReceived = drain(ender);
        other.write('reply after ');
        other.end('end');
        assert.equal((await enderReceived).sha256, createHash('sha256').update('reply after end').digest('hex'));
        await Promise.all([clientChannel.closed ? undefined : once(clientChannel, 'close'), serverChannel.closed ? undefined : once(serverChannel, 'close')]);
        assert.equal(pair.client.destroyed && pair.server.destroyed, true);
      } finally {
        await pair.close();
      }
    }
  });

  it('destroy() destroys the socket', async () => {
    const pair = await handshakenPair();
    try {
      const clientChannel = pair.channel('client');
      const closed = once(pair.client, 'close');
      clientChannel.destroy();
      await closed;
      assert.equal(pair.client.destroyed, true);
    } finally {
      await pair.close();
    }
  });
});
