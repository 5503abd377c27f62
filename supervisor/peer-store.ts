/**
 * The peer store (DESIGN §3 "Peer store", issue 4 item 8): what the node knows about each peer —
 * addresses, last seen, disconnect history, score, ban expiry, persistent or temporary.
 *
 * In memory by default, bounded in every dimension: at most `maxPeers` records (the least recently
 * seen temporary peer goes first), `maxAddresses` addresses and `maxHistory` disconnects per peer,
 * because peer IDs and listen addresses arrive from the network.
 *
 * Persisted to a file only when the app gives a path: {@link PeerStore.saveToFile} replaces the file
 * atomically (write a temporary file, fsync, rename), so a crash mid-save leaves the old file whole;
 * {@link PeerStore.loadFromFile} reports a corrupt file and sets it aside instead of dropping it.
 * All times are ms on the supervisor's injected clock, passed in by the caller.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { PeerwardenError } from '../transport/errors.js';

/** One past disconnect: the reason (a DESIGN §2 disconnect reason, or other text) and when, in ms. */
export interface DisconnectRecord {
  readonly reason: string;
  readonly atMs: number;
}

/** Whether a peer is redialed (DESIGN §2): `persistent` peers are dialed again on start, `temporary` ones are not. */
export type PeerKind = 'persistent' | 'temporary';

/**
 * What the store knows about one peer. Records are frozen; every change makes a new one.
 * - `addresses`: dialable addresses, most recently learned first, at most `maxAddresses`.
 * - `lastSeenMs`: when the peer was last connected or heard from, `null` if never.
 * - `history`: past disconnects, oldest first, the last `maxHistory` only.
 * - `score`: the latest health/reputation score the supervisor assigned (finite number).
 * - `bannedUntilMs`: end of the peer's ban, `null` if none was recorded (see `bans.ts`).
 */
export interface PeerRecord {
  readonly peerId: string;
  readonly addresses: readonly string[];
  readonly lastSeenMs: number | null;
  readonly kind: PeerKind;
  readonly history: readonly DisconnectRecord[];
  readonly score: number;
  readonly bannedUntilMs: number | null;
}

/** Fields {@link PeerStore.upsert} may set. `addresses` are merged in front of the known ones; the others replace. */
export interface PeerUpdate {
  readonly addresses?: readonly string[];
  readonly lastSeenMs?: number | null;
  readonly kind?: PeerKind;
  readonly score?: number;
  readonly bannedUntilMs?: number | null;
}

/** Bounds of a store. */
export interface PeerStoreOptions {
  /** Most records kept (default 10,000); beyond it the least recently seen temporary peer is evicted. */
  readonly maxPeers?: number;
  /** Most disconnects kept per peer (default 32), the newest. */
  readonly maxHistory?: number;
  /** Most addresses kept per peer (default 16), the most recently learned. */
  readonly maxAddresses?: number;
}

/** Default bounds (peerwarden's choice). */
export const DEFAULT_PEER_STORE_OPTIONS: Required<PeerStoreOptions> = { maxPeers: 10_000, maxHistory: 32, maxAddresses: 16 };

/** The file format, version 1: `{ "version": 1, "peers": PeerRecord[] }` as JSON. */
export interface PeerStoreFile {
  readonly version: 1;
  readonly peers: readonly PeerRecord[];
}

/** Stored data failed the schema check in {@link PeerStore.fromJSON}; `message` names the path of the bad field. */
export class PeerStoreFormatError extends PeerwardenError {
  constructor(message: string) {
    super('PEER_STORE_FORMAT', message);
  }
}

/**
 * Why {@link PeerStore.loadFromFile} started from an empty store although a file was there:
 * - `corrupt`: the file is not JSON or fails the schema; it was renamed to `setAsidePath` (absent
 *   if that rename failed too, which `message` then says).
 * - `unreadable`: the file could not be read (permissions, a directory, I/O error); it is left in place.
 */
export interface PeerStoreProblem {
  readonly kind: 'corrupt' | 'unreadable';
  readonly setAsidePath?: string;
  readonly message: string;
}

/** Result of {@link PeerStore.loadFromFile}. */
export interface PeerStoreLoad {
  readonly store: PeerStore;
  readonly problem?: PeerStoreProblem;
}

/**
 * The in-memory peer store. Not safe against concurrent mutation from several owners; the
 * supervisor is its one owner. Lookups are O(1); an insert past `maxPeers` scans for the eviction
 * candidate, O(n).
 */
export class PeerStore {
  readonly #peers = new Map<string, PeerRecord>();
  readonly #maxPeers: number;
  readonly #maxHistory: number;
  readonly #maxAddresses: number;

  /** @throws RangeError if a bound is not a positive integer. */
  constructor(options: PeerStoreOptions = {}) {
    const { maxPeers, maxHistory, maxAddresses } = { ...DEFAULT_PEER_STORE_OPTIONS, ...options };
    for (const [name, bound] of [['maxPeers', maxPeers], ['maxHistory', maxHistory], ['maxAddresses', maxAddresses]] as const) {
      if (!Number.isSafeInteger(bound) || bound < 1) throw new RangeError(`${name} must be a positive integer, got ${bound}`);
    }
    this.#maxPeers = maxPeers;
    this.#maxHistory = maxHistory;
    this.#maxAddresses = maxAddresses;
  }

  /** Number of records. */
  get size(): number {
    return this.#peers.size;
  }

  /** The record of a peer, or `undefined`. */
  get(peerId: string): PeerRecord | undefined {
    return this.#peers.get(peerId);
  }

  /**
   * Creates or updates a peer's record and returns it. A new record starts temporary, never
   * seen, score 0, no history, no ban. May evict another peer (or this one, if it is the least
   * recently seen temporary peer) to stay within `maxPeers`; persistent peers are never evicted,
   * so only they can take the store past `maxPeers`.
   *
   * @throws RangeError for an empty peer ID, a non-finite score or time.
   */
  upsert(peerId: string, update: PeerUpdate = {}): PeerRecord {
    if (peerId === '') throw new RangeError('peerId must not be empty');
    if (update.score !== undefined && !Number.isFinite(update.score)) throw new RangeError(`score must be finite, got ${update.score}`);
    checkTime(update.lastSeenMs, 'lastSeenMs');
    checkTime(update.bannedUntilMs, 'bannedUntilMs');
    const old = this.#peers.get(peerId) ?? newRecord(peerId);
    const record = freezeRecord({
      peerId,
      addresses: update.addresses === undefined ? old.addresses : this.#mergeAddresses(update.addresses, old.addresses),
      lastSeenMs: update.lastSeenMs === undefined ? old.lastSeenMs : update.lastSeenMs,
      kind: update.kind ?? old.kind,
      history: old.history,
      score: update.score ?? old.score,
      bannedUntilMs: update.bannedUntilMs === undefined ? old.bannedUntilMs : update.bannedUntilMs,
    });
    return this.#put(record);
  }

  /** Records that the peer was seen at `atMs` (connected, or a message arrived), learning `address` if given. Creates the record if needed. */
  recordSeen(peerId: string, atMs: number, address?: string): PeerRecord {
    return this.upsert(peerId, address === undefined ? { lastSeenMs: atMs } : { lastSeenMs: atMs, addresses: [address] });
  }

  /**
   * Appends a disconnect `{ reason, atMs }` to the peer's history, keeping the newest
   * `maxHistory`. Creates the record if needed.
   *
   * @throws RangeError for an empty peer ID or a non-finite time.
   */
  recordDisconnect(peerId: string, reason: string, atMs: number): PeerRecord {
    if (peerId === '') throw new RangeError('peerId must not be empty');
    checkTime(atMs, 'atMs');
    const old = this.#peers.get(peerId) ?? newRecord(peerId);
    const history = [...old.history, { reason, atMs }].slice(-this.#maxHistory);
    return this.#put(freezeRecord({ ...old, history }));
  }

  /** Forgets a peer. Returns whether it was known. */
  remove(peerId: string): boolean {
    return this.#peers.delete(peerId);
  }

  /** Every record, sorted by peer ID. */
  list(): PeerRecord[] {
    return [...this.#peers.values()].sort(byPeerId);
  }

  /** The persistent peers, sorted by peer ID: the ones to dial again on start (issue 4 item 8). */
  persistentPeers(): PeerRecord[] {
    return this.list().filter((r) => r.kind === 'persistent');
  }

  /** The store as plain JSON data ({@link PeerStoreFile}); `JSON.stringify(store)` uses it. */
  toJSON(): PeerStoreFile {
    return { version: 1, peers: this.list() };
  }

  /**
   * A store from data in the {@link PeerStoreFile} format (e.g. `JSON.parse` of a saved file).
   * Strict: every field present with its type and nothing else, finite numbers, no duplicate
   * or empty peer IDs. Lists longer than this store's bounds keep their newest entries, and
   * records past `maxPeers` are evicted as usual (the file may come from a store with larger bounds).
   *
   * @throws PeerStoreFormatError naming the first bad field.
   * @throws RangeError if a bound in `options` is not a positive integer.
   */
  static fromJSON(value: unknown, options: PeerStoreOptions = {}): PeerStore {
    const store = new PeerStore(options);
    if (!isObject(value)) throw new PeerStoreFormatError('peer store: expected an object');
    checkKeys(value, ['version', 'peers'], 'peer store');
    if (value.version !== 1) throw new PeerStoreFormatError(`peer store.version: expected 1, got ${JSON.stringify(value.version)}`);
    const peers = value.peers;
    if (!Array.isArray(peers)) throw new PeerStoreFormatError('peer store.peers: expected an array');
    const records: PeerRecord[] = [];
    const seen = new Set<string>();
    peers.forEach((raw: unknown, i) => {
      const record = parseRecord(raw, `peer store.peers[${i}]`);
      if (seen.has(record.peerId)) throw new PeerStoreFormatError(`peer store.peers[${i}].peerId: duplicate ${JSON.stringify(record.peerId)}`);
      seen.add(record.peerId);
      records.push(record);
    });
    for (const record of records) {
      store.#put(
        freezeRecord({
          ...record,
          addresses: record.addresses.slice(0, store.#maxAddresses),
          history: record.history.slice(-store.#maxHistory),
        }),
      );
    }
    return store;
  }

  /**
   * Writes the store to `path` atomically: the JSON goes to `<path>.tmp-<random hex>` in the same
   * directory, is fsynced, then renamed over `path` (POSIX rename replaces atomically), and the
   * directory is fsynced so the rename itself survives a power cut. A crash at any point leaves
   * either the old file or the new one at `path`, never a mix; a leftover `.tmp-` file is
   * harmless and ignored by {@link PeerStore.loadFromFile}. The snapshot is taken when called.
   *
   * @throws the `node:fs` error (e.g. ENOENT for a missing directory, EACCES) if the write or
   *   rename fails; the temporary file is removed then.
   */
  async saveToFile(path: string): Promise<void> {
    const json = JSON.stringify(this.toJSON());
    const tmp = `${path}.tmp-${randomBytes(8).toString('hex')}`;
    try {
      // 'wx': never write through an existing file (or a symlink someone planted there).
      const handle = await open(tmp, 'wx', 0o600);
      try {
        await handle.writeFile(json, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, path);
    } catch (error) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw error;
    }
    await syncDirectory(dirname(path));
  }

  /**
   * Reads a store saved by {@link PeerStore.saveToFile}.
   * - No file at `path`: an empty store, no problem (first start).
   * - The file cannot be read: an empty store and problem `unreadable`; the file stays.
   * - Not JSON, or fails the {@link PeerStore.fromJSON} schema: an empty store and problem
   *   `corrupt`; the file is renamed to `<path>.corrupt-<nowMs>` (`-1`, `-2`… appended if taken) so
   *   nothing is lost and the next save does not overwrite the evidence.
   * `options.nowMs` stamps the set-aside name (default `Date.now()`: a file name, not a decision).
   *
   * @throws RangeError if a bound in `options` is not a positive integer. File errors are reported, not thrown.
   */
  static async loadFromFile(path: string, options: PeerStoreOptions & { readonly nowMs?: number } = {}): Promise<PeerStoreLoad> {
    const { nowMs, ...bounds } = options;
    const empty = new PeerStore(bounds);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return { store: empty };
      return { store: empty, problem: { kind: 'unreadable', message: `cannot read peer store ${path}: ${errorMessage(error)}` } };
    }
    let reason: string;
    try {
      return { store: PeerStore.fromJSON(JSON.parse(text) as unknown, bounds) };
    } catch (error) {
      // JSON.parse throws SyntaxError; fromJSON throws PeerStoreFormatError; anything else is a bug.
      if (error instanceof PeerStoreFormatError) reason = error.message;
      else if (error instanceof SyntaxError) reason = `not JSON: ${error.message}`;
      else throw error;
    }
    const stamp = Math.trunc(nowMs ?? Date.now());
    try {
      const setAsidePath = await freeName(`${path}.corrupt-${stamp}`);
      await rename(path, setAsidePath);
      return { store: empty, problem: { kind: 'corrupt', setAsidePath, message: `corrupt peer store ${path} (${reason}); moved to ${setAsidePath}` } };
    } catch (error) {
      return {
        store: empty,
        problem: { kind: 'corrupt', message: `corrupt peer store ${path} (${reason}); could not set it aside: ${errorMessage(error)}` },
      };
    }
  }

  /** Stores `record`, then evicts down to `maxPeers`. Returns `record`. */
  #put(record: PeerRecord): PeerRecord {
    this.#peers.set(record.peerId, record);
    if (this.#peers.size > this.#maxPeers) this.#evictOne();
    return record;
  }

  /** Evicts the temporary peer seen longest ago (never seen counts as oldest; ties go to the earliest stored). */
  #evictOne(): void {
    let victim: PeerRecord | undefined;
    for (const record of this.#peers.values()) {
      if (record.kind === 'persistent') continue;
      if (victim === undefined || (record.lastSeenMs ?? -Infinity) < (victim.lastSeenMs ?? -Infinity)) victim = record;
    }
    if (victim !== undefined) this.#peers.delete(victim.peerId);
  }

  #mergeAddresses(fresh: readonly string[], known: readonly string[]): string[] {
    return [...new Set([...fresh, ...known])].slice(0, this.#maxAddresses);
  }
}

function newRecord(peerId: string): PeerRecord {
  return { peerId, addresses: [], lastSeenMs: null, kind: 'temporary', history: [], score: 0, bannedUntilMs: null };
}

function freezeRecord(record: PeerRecord): PeerRecord {
  // Field by field, not `{ ...record, ... }`: on Node 20's V8 a spread followed by more properties
  // gave every record a hidden class of its own (about 0.25 KiB each, one record per peer).
  return Object.freeze({
    peerId: record.peerId,
    addresses: Object.freeze([...record.addresses]),
    lastSeenMs: record.lastSeenMs,
    kind: record.kind,
    history: Object.freeze(record.history.map((h) => Object.freeze({ reason: h.reason, atMs: h.atMs }))),
    score: record.score,
    bannedUntilMs: record.bannedUntilMs,
  });
}

function byPeerId(a: PeerRecord, b: PeerRecord): number {
  return a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0;
}

function checkTime(value: number | null | undefined, name: string): void {
  if (typeof value === 'number' && !Number.isFinite(value)) throw new RangeError(`${name} must be a finite ms time, got ${value}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkKeys(value: Record<string, unknown>, allowed: readonly string[], path: string): void {
  for (const key of allowed) {
    if (!Object.hasOwn(value, key)) throw new PeerStoreFormatError(`${path}: missing field ${key}`);
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw new PeerStoreFormatError(`${path}: unknown field ${key}`);
  }
}

const RECORD_KEYS = ['peerId', 'addresses', 'lastSeenMs', 'kind', 'history', 'score', 'bannedUntilMs'] as const;

function parseRecord(raw: unknown, path: string): PeerRecord {
  if (!isObject(raw)) throw new PeerStoreFormatError(`${path}: expected an object`);
  checkKeys(raw, RECORD_KEYS, path);
  const { peerId, addresses, lastSeenMs, kind, history, score, bannedUntilMs } = raw;
  if (typeof peerId !== 'string' || peerId === '') throw new PeerStoreFormatError(`${path}.peerId: expected a non-empty string`);
  if (!Array.isArray(addresses)) throw new PeerStoreFormatError(`${path}.addresses: expected an array`);
  const addressList: string[] = [];
  addresses.forEach((a: unknown, i) => {
    if (typeof a !== 'string') throw new PeerStoreFormatError(`${path}.addresses[${i}]: expected a string`);
    addressList.push(a);
  });
  if (kind !== 'persistent' && kind !== 'temporary') throw new PeerStoreFormatError(`${path}.kind: expected "persistent" or "temporary"`);
  if (!Array.isArray(history)) throw new PeerStoreFormatError(`${path}.history: expected an array`);
  const historyList: DisconnectRecord[] = [];
  history.forEach((h: unknown, i) => {
    const at = `${path}.history[${i}]`;
    if (!isObject(h)) throw new PeerStoreFormatError(`${at}: expected an object`);
    checkKeys(h, ['reason', 'atMs'], at);
    if (typeof h.reason !== 'string') throw new PeerStoreFormatError(`${at}.reason: expected a string`);
    if (!isFiniteNumber(h.atMs)) throw new PeerStoreFormatError(`${at}.atMs: expected a finite number`);
    historyList.push({ reason: h.reason, atMs: h.atMs });
  });
  if (!isFiniteNumber(score)) throw new PeerStoreFormatError(`${path}.score: expected a finite number`);
  if (lastSeenMs !== null && !isFiniteNumber(lastSeenMs)) throw new PeerStoreFormatError(`${path}.lastSeenMs: expected a finite number or null`);
  if (bannedUntilMs !== null && !isFiniteNumber(bannedUntilMs)) {
    throw new PeerStoreFormatError(`${path}.bannedUntilMs: expected a finite number or null`);
  }
  return { peerId, addresses: addressList, lastSeenMs, kind, history: historyList, score, bannedUntilMs };
}

function isFiniteNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

function errorCode(error: unknown): string | undefined {
  return isObject(error) && typeof error.code === 'string' ? error.code : undefined;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** `base` if nothing is there, else `base-1`, `base-2`…: a rename must never overwrite an earlier set-aside file. */
async function freeName(base: string): Promise<string> {
  for (let n = 0; ; n++) {
    const candidate = n === 0 ? base : `${base}-${n}`;
    try {
      await stat(candidate);
    } catch (error) {
      if (errorCode(error) === 'ENOENT') return candidate;
      throw error;
    }
  }
}

/** fsync of a directory makes a rename in it durable on Linux; other platforms refuse to open a directory, which is fine. */
async function syncDirectory(directory: string): Promise<void> {
  let handle;
  try {
    handle = await open(directory, 'r');
    await handle.sync();
  } catch {
    // Best effort: the file itself is already synced and in place.
  } finally {
    await handle?.close();
  }
}
