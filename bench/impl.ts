/**
 * What every system under test offers the benchmark: peerwarden, js-libp2p 3 (TCP + Noise +
 * yamux) and raw `node:net`. The cases in `bench/cases.ts` drive only this interface, so the
 * three are measured by the same code.
 *
 * Two roles, always in different processes:
 * - **peers** (`bench/peers.ts`): `count` listening peers, each with its own identity and port,
 *   that accept connections, answer pings and serve the sink protocol;
 * - **node** (`bench/case.ts`): the process under measure; it dials the peers.
 */

/** Names of the systems under test, in the order the table shows them. */
export type ImplName = 'peerwarden' | 'js-libp2p' | 'raw TCP';

/**
 * The sink protocol every peer serves on a stream it accepts (name {@link SINK_PROTOCOL}): read
 * every byte until the writer ends its side, then write back the count as 8 bytes (u64 big-endian)
 * and end. Raw TCP has no streams: the whole socket is the stream and the writer half-closes.
 */
export const SINK_PROTOCOL = '/peerwarden-bench/sink/1.0.0';

/** Options of {@link BenchImpl.startNode}. */
export interface NodeOptions {
  /** Connections the node must be able to hold at once (limits are raised to fit), count. */
  readonly maxConnections: number;
}

/** Options of {@link BenchImpl.startPeers}. */
export interface PeersOptions {
  /** Number of peers to start, each with its own identity and listening port on 127.0.0.1. */
  readonly count: number;
}

/** A group of listening peers in one process. */
export interface PeerGroup {
  /**
   * One dialable address per peer, as a string that can cross a process boundary: `host:port`
   * for peerwarden and raw TCP, a multiaddr with `/p2p/<peer ID>` for js-libp2p.
   */
  readonly addresses: readonly string[];
  /** Closes every connection and listener of the group. */
  stop(): Promise<void>;
}

/** One live connection of a {@link BenchNode}, fully up (TCP + handshake + mux where there is one). */
export interface BenchConnection {
  /**
   * One ping on the system's own ping (peerwarden: control-stream ping; js-libp2p:
   * `@libp2p/ping`; raw TCP: an 8-byte echo on the socket). Resolves when the answer arrived.
   * @throws when the connection fails first.
   */
  ping(): Promise<void>;
  /**
   * Opens one stream of the sink protocol, writes `totalBytes` in chunks of `chunkBytes`, ends
   * its side and resolves when the peer's count came back (and equals `totalBytes`).
   * @throws when the count differs or the connection fails.
   */
  sendBulk(totalBytes: number, chunkBytes: number): Promise<void>;
  /** Graceful close (goodbye / close handshake where the system has one); resolves when closed. */
  close(): Promise<void>;
  /**
   * Destroys the connection's socket in this process and resolves with the milliseconds
   * (`performance.now()`) from the destroy call until the node reacted: peerwarden: the
   * connection is in Backoff; js-libp2p: its `connection:close` event; raw TCP: the socket's
   * `'close'` event.
   */
  destroySocketAndTimeReaction(): Promise<number>;
}

/** The node under measure. */
export interface BenchNode {
  /**
   * Dials `address` (one of {@link PeerGroup.addresses}) and resolves once the connection is
   * fully up. peerwarden dials persistent connections here, so a lost socket goes to Backoff.
   * @throws when the dial fails.
   */
  connect(address: string): Promise<BenchConnection>;
  /** Stops the node: closes every connection, timer and listener. */
  stop(): Promise<void>;
}

/** One system under test. */
export interface BenchImpl {
  readonly name: ImplName;
  /** Starts the listening peers of one process. Pings are on, at the system's default interval. */
  startPeers(options: PeersOptions): Promise<PeerGroup>;
  /** Starts a node under measure (a dialer). Pings are on, at the system's default interval. */
  startNode(options: NodeOptions): Promise<BenchNode>;
}
