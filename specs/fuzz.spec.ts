/**
 * The parser fuzz targets of `fuzz/targets.ts` (issue 6, item 3) at CI counts, through the same
 * functions `npm run fuzz` runs 100,000 times each; plus checks that each harness really reaches
 * the accept path on intact input (so the fuzzing is not vacuous), the mutation helpers, the
 * runner's arguments, and the known bugs the fuzzing found, kept as named failing cases.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DEFAULT_RUNS, parseFuzzArguments } from '../fuzz/run.js';
import {
  cut,
  formatReport,
  FUZZ_TARGETS,
  fuzzControlChannel,
  fuzzHandshakePayload,
  fuzzMessageDecoder,
  fuzzNoiseHandshake,
  fuzzNoiseMessage,
  fuzzProtocolSelect,
  fuzzSecureChannel,
  fuzzYamuxHeader,
  fuzzYamuxSession,
  mutate,
  type Chunking,
  type NoiseHandshakeCase,
  type YamuxSessionCase,
} from '../fuzz/targets.js';
import { encodeHandshakePayload, PROTOCOL_VERSION } from '../transport/handshake-payload.js';
import { encodeHeader, Flag, FrameType, INITIAL_STREAM_WINDOW } from '../transport/yamux/index.js';

/**
 * Cases per target in CI: 2,000 each, about 10 s for this whole file on these 2-core machines
 * when idle (the handshake target costs about 0.7 ms per case, the others 0.05–0.8 ms).
 */
const CI_RUNS = 2_000;

const WHOLE: Chunking = { cuts: [], bytewise: false, turns: false };
const BYTEWISE: Chunking = { cuts: [], bytewise: true, turns: true };

const peerPayload = encodeHandshakePayload({
  protocolVersion: PROTOCOL_VERSION,
  featureFlags: 0b101,
  privacyFlags: 0,
  nodeNonce: Uint8Array.from([9, 9, 9, 9, 9, 9, 9, 9]),
  listenAddresses: ['127.0.0.1:4002'],
});

function intactHandshake(role: 'initiator' | 'responder', overrides: Partial<NoiseHandshakeCase> = {}): NoiseHandshakeCase {
  return {
    role,
    script: { kind: 'transcript', peerPayload, firstPayload: new Uint8Array(0), sameStatic: false, trailing: Uint8Array.from([1, 2, 3]), mutations: [] },
    expectPeer: 'right',
    requiredFeatures: 0b001,
    chunking: BYTEWISE,
    ending: 'end',
    ...overrides,
  };
}

describe('parser fuzzing at CI counts: only typed errors, bounded buffers, no hangs', () => {
  for (const target of FUZZ_TARGETS) {
    const numRuns = CI_RUNS;
    it(`${target.name} (${target.summary}): ${numRuns} cases`, async () => {
      const report = await target.check({ numRuns });
      assert.equal(report.failed, false, formatReport(report));
      assert.equal(report.cases, numRuns);
    });
  }
});

describe('each harness reaches the accept path on intact input', () => {
  it('Noise messages 1, 2 and 3 of a real handshake are accepted, a flipped bit is not', async () => {
    for (const stage of [1, 2, 3] as const) {
      assert.equal(await fuzzNoiseMessage({ stage, kind: 'mutated', payload: Uint8Array.from([7, 7]), mutations: [] }), 'ok');
    }
    const flipped = { kind: 'flip', at: { anchor: 0, offset: 40 }, bit: 0 } as const;
    assert.equal(await fuzzNoiseMessage({ stage: 3, kind: 'mutated', payload: new Uint8Array(4), mutations: [flipped] }), 'PROTOCOL_VIOLATION');
  });

  it('an intact transcript completes the handshake in both roles, byte by byte', async () => {
    assert.equal(await fuzzNoiseHandshake(intactHandshake('initiator')), 'ok');
    assert.equal(await fuzzNoiseHandshake(intactHandshake('responder')), 'ok');
  });

  it('an intact transcript ends in the typed error its checks call for', async () => {
    assert.equal(await fuzzNoiseHandshake(intactHandshake('initiator', { expectPeer: 'wrong' })), 'PEER_ID_MISMATCH');
    assert.equal(await fuzzNoiseHandshake(intactHandshake('responder', { requiredFeatures: 0b010 })), 'INCOMPATIBLE_PEER');
    const self = intactHandshake('responder');
    assert.equal(
      await fuzzNoiseHandshake({ ...self, script: { ...(self.script as Extract<NoiseHandshakeCase['script'], { kind: 'transcript' }>), sameStatic: true } }),
      'SELF_CONNECTION',
    );
  });

  it('intact payloads, headers and records decode', async () => {
    assert.equal(await fuzzHandshakePayload(peerPayload), 'ok');
    assert.equal(await fuzzYamuxHeader(encodeHeader({ type: FrameType.Data, flags: Flag.SYN, streamId: 1, length: 5 })), 'ok');
    const messages = [Uint8Array.from([1]), new Uint8Array(0), new Uint8Array(300)];
    assert.equal(await fuzzMessageDecoder({ maxMessageBytes: undefined, wire: { kind: 'records', messages, mutations: [] }, chunking: BYTEWISE, end: true }), 'ok');
  });

  it('intact sealed frames are delivered in full, a flipped tag bit is a ProtocolViolation', async () => {
    const plaintexts = [Uint8Array.from([1, 2, 3]), new Uint8Array(0), new Uint8Array(65_519).fill(9)];
    const base = { leftover: 5, reader: 'pull', highWaterMark: 64, chunking: WHOLE, ending: 'end' } as const;
    assert.equal(await fuzzSecureChannel({ ...base, wire: { kind: 'frames', plaintexts, mutations: [] } }), 'ok');
    const flip = { kind: 'flip', at: { anchor: 2, offset: 0 }, bit: 3 } as const;
    assert.equal(await fuzzSecureChannel({ ...base, wire: { kind: 'frames', plaintexts, mutations: [flip] } }), 'PROTOCOL_VIOLATION');
  });

  it('a yamux stream opened, written and closed by the peer ends the session cleanly', async () => {
    const frames = [
      { type: FrameType.Data, flags: Flag.SYN, stream: 1, value: 0, body: Uint8Array.from([1, 2, 3]) },
      { type: FrameType.Ping, flags: Flag.SYN, stream: 0, value: 7, body: new Uint8Array(0) },
      { type: FrameType.WindowUpdate, flags: Flag.FIN, stream: 1, value: 0, body: new Uint8Array(0) },
    ];
    const input: YamuxSessionCase = {
      role: 'server',
      streams: 'echo',
      openLocal: 1,
      ping: true,
      maxStreams: undefined,
      wire: { kind: 'frames', frames, mutations: [] },
      chunking: BYTEWISE,
      ending: 'end',
    };
    assert.equal(await fuzzYamuxSession(input), 'ok');
  });

  it('a protocol header and a ping/goodbye exchange are accepted', async () => {
    assert.equal(
      await fuzzProtocolSelect({ wire: { kind: 'header', name: '/app/echo/1', rest: Uint8Array.from([5, 6]), mutations: [] }, chunking: BYTEWISE, ending: 'end' }),
      'ok',
    );
    const pong = Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0]);
    const frames = [
      { type: 2, body: pong },
      { type: 1, body: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]) },
      { type: 3, body: Uint8Array.from([0, 1]) },
    ];
    assert.equal(await fuzzControlChannel({ pings: 1, wire: { kind: 'frames', frames, mutations: [] }, chunking: BYTEWISE, ending: 'none' }), 'ok');
  });
});

describe('mutation and chunking helpers', () => {
  const sample = { bytes: Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]), anchors: [0, 4] };

  it('leave the sample untouched and apply edits at anchors', () => {
    assert.deepEqual([...mutate(sample, [])], [0, 1, 2, 3, 4, 5, 6, 7]);
    const edited = mutate(sample, [
      { kind: 'length', at: { anchor: 1, offset: 0 }, width: 4, value: 0xffff_fffe },
      { kind: 'flip', at: { anchor: 0, offset: 1 }, bit: 7 },
    ]);
    assert.deepEqual([...edited], [0, 0x81, 2, 3, 0xff, 0xff, 0xff, 0xfe]);
    assert.deepEqual([...sample.bytes], [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual([...mutate(sample, [{ kind: 'splice', at: { anchor: 0, offset: 2 }, from: { anchor: 1, offset: 2 } }])], [0, 1, 6, 7]);
    assert.deepEqual([...mutate(sample, [{ kind: 'truncate', at: { anchor: 1, offset: -1 } }])], [0, 1, 2]);
  });

  it('cut input into chunks that concatenate back to it', () => {
    const bytes = Uint8Array.from({ length: 100 }, (_, i) => i);
    for (const chunking of [WHOLE, BYTEWISE, { cuts: [30, 130, 0, 99], bytewise: false, turns: false }]) {
      assert.deepEqual(Buffer.concat(cut(bytes, chunking)), Buffer.from(bytes));
    }
    assert.equal(cut(bytes, BYTEWISE).length, 100);
  });
});

describe('fuzz/run.ts arguments', () => {
  it('default to every target at 100,000 cases', () => {
    const args = parseFuzzArguments([]);
    assert.equal(args.runs, DEFAULT_RUNS);
    assert.equal(DEFAULT_RUNS, 100_000);
    assert.deepEqual(
      args.targets.map((target) => target.name),
      FUZZ_TARGETS.map((target) => target.name),
    );
  });

  it('select a replay of one target', () => {
    const args = parseFuzzArguments(['--target', 'yamux-session', '--seed=-42', '--path', '3:1:0', '--runs', '10']);
    assert.deepEqual(
      args.targets.map((target) => target.name),
      ['yamux-session'],
    );
    assert.equal(args.seed, -42);
    assert.equal(args.path, '3:1:0');
    assert.equal(args.runs, 10);
  });

  it('refuse unknown targets, bad counts and a path without a seed', () => {
    assert.throws(() => parseFuzzArguments(['--target', 'nope']), RangeError);
    assert.throws(() => parseFuzzArguments(['--runs', '0']), RangeError);
    assert.throws(() => parseFuzzArguments(['--path', '1:2']), RangeError);
  });
});

describe('bugs found by fuzzing, fixed (regressions)', () => {
  /**
   * Was BUG(yamux flow control), transport/yamux/stream.ts `creditWindow`: the receive window was
   * credited as soon as a chunk moved into Node's readable buffer, which happens on the
   * application's first `read()` of any size, not when the application has read the bytes. A peer
   * can therefore make a stream whose application read 1 byte hold 2 × 256 KiB − 1 unread bytes
   * (the docs promise one window: "a slow reader bounds what the peer may send", "worst-case
   * receive buffering … about maxStreams × initialWindow").
   * Input: server session; peer sends Data SYN stream 1 with 262,144 bytes; the application calls
   * `read(1)` once; the session answered WindowUpdate(stream 1, +262,144); the peer sent Data
   * stream 1 with 262,144 more bytes: `bufferedBytes` = 524,287. Fixed: unread bytes in Node's
   * buffer are not credited.
   */
  it('yamux flow control: a stream whose reader took 1 byte grants no window back, so a second window is a violation', async () => {
    const window = new Uint8Array(INITIAL_STREAM_WINDOW).fill(0x77);
    const input: YamuxSessionCase = {
      role: 'server',
      streams: 'sip',
      openLocal: 0,
      ping: false,
      maxStreams: undefined,
      wire: {
        kind: 'frames',
        frames: [
          { type: FrameType.Data, flags: Flag.SYN, stream: 1, value: 0, body: window },
          { type: FrameType.Data, flags: 0, stream: 1, value: 0, body: window },
        ],
        mutations: [],
      },
      // Cut after the first frame (12-byte header + body), with a turn for the read in between.
      chunking: { cuts: [12 + INITIAL_STREAM_WINDOW], bytewise: false, turns: true },
      ending: 'end',
    };
    // Before the fix the session granted a whole window on that 1-byte read and buffered 524,287
    // unread bytes; now nothing is granted, and the peer's second window overruns it.
    assert.equal(await fuzzYamuxSession(input), 'PROTOCOL_VIOLATION');
  });
});
