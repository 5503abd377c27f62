/**
 * The ban list (DESIGN §3 "Bans", issue 4 item 3): an expiring set of bans by peer ID and by IP.
 *
 * Pure and immutable: every function returns a new {@link BanList} (or the same one when nothing
 * changes) and never mutates its input, so the supervisor can keep the list in its XState context
 * and the inspector can show it. Time is always passed in (`nowMs`, on the supervisor's injected
 * clock); nothing here reads a clock. A ban holds while `nowMs < until` and ends exactly at `until`.
 *
 * The list is plain JSON data (`JSON.parse(JSON.stringify(list))` is an equal list), and
 * {@link parseBanList} checks such data strictly when it comes back from storage.
 */
import { isIP } from 'node:net';
import { PeerwardenError } from '../transport/errors.js';

/** Default ban duration: 24 h in ms (DESIGN §6, after Bitcoin Core's `-bantime` default). */
export const DEFAULT_BAN_DURATION_MS = 24 * 60 * 60 * 1000;

/** One ban: active while `nowMs < until` (ms on the injected clock); `reason` is free text for people and logs. */
export interface BanEntry {
  readonly until: number;
  readonly reason: string;
}

/**
 * The ban list: entries keyed by peer ID and by normalised IP (see {@link normalizeIp}). Plain
 * JSON data. Expired entries stay until {@link pruneExpired} drops them; they no longer count.
 */
export interface BanList {
  readonly byPeerId: Readonly<Record<string, BanEntry>>;
  readonly byIp: Readonly<Record<string, BanEntry>>;
}

/** What to ban, unban or check: a peer ID, an IP (v4 or v6, any spelling), or both. */
export interface BanTarget {
  readonly peerId?: string;
  readonly ip?: string;
}

/** One line of the listing from {@link activeBans}. */
export type BanListing =
  | { readonly by: 'peerId'; readonly peerId: string; readonly until: number; readonly reason: string }
  | { readonly by: 'ip'; readonly ip: string; readonly until: number; readonly reason: string };

/** A stored ban list failed the schema check in {@link parseBanList}; `message` names the path of the bad field. */
export class BanListFormatError extends PeerwardenError {
  constructor(message: string) {
    super('BAN_LIST_FORMAT', message);
  }
}

/** A list with no bans. */
export function emptyBans(): BanList {
  return { byPeerId: {}, byIp: {} };
}

/**
 * The canonical text of an IP address, so that every spelling of one address matches one entry:
 * IPv4 as dotted decimal; IPv4-mapped IPv6 (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) as the IPv4
 * address it maps, since a dual-stack socket reports IPv4 peers that way; other IPv6 in the
 * RFC 5952 §4 form (lower case, no leading zeros, longest zero run as `::`), zone index dropped.
 * Returns `null` for text that is not an IP address (IPv4 with leading zeros is refused, as
 * `node:net` refuses it, because some parsers read it as octal).
 */
export function normalizeIp(ip: string): string | null {
  const family = isIP(ip);
  if (family === 4) return ip;
  if (family !== 6) return null;
  const groups = parseIpv6(ip);
  if (groups === null) return null;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const hi = groups[6] ?? 0;
    const lo = groups[7] ?? 0;
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return formatIpv6(groups);
}

/** Eight 16-bit groups of an address that `isIP` already accepted as IPv6, or `null` if it does not parse after all. */
function parseIpv6(text: string): number[] | null {
  const zone = text.indexOf('%');
  let rest = (zone === -1 ? text : text.slice(0, zone)).toLowerCase();
  // A trailing dotted IPv4 part stands for the last two groups.
  const lastColon = rest.lastIndexOf(':');
  const tail = rest.slice(lastColon + 1);
  if (tail.includes('.')) {
    const octets = tail.split('.').map(Number);
    const [a = 0, b = 0, c = 0, d = 0] = octets;
    rest = `${rest.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = rest.split('::');
  if (halves.length > 2) return null;
  const parse = (part: string | undefined): number[] =>
    part === undefined || part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16));
  const head = parse(halves[0]);
  const back = parse(halves[1]);
  const missing = 8 - head.length - back.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...back];
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

/** RFC 5952 §4 text of eight groups: the first longest run of two or more zero groups becomes `::`. */
function formatIpv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** The IP of a target in canonical form, `undefined` when absent; `null` when present but not an IP. */
function targetIp(target: BanTarget): string | null | undefined {
  return target.ip === undefined ? undefined : normalizeIp(target.ip);
}

/** Own-property lookup, so a key such as `__proto__` or `constructor` never reads the prototype. */
function entryOf(record: Readonly<Record<string, BanEntry>>, key: string): BanEntry | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/** `record` with `key` set to `entry`, keeping the later of the two expiries (a short ban never shortens a long one). */
function withEntry(record: Readonly<Record<string, BanEntry>>, key: string, entry: BanEntry): Readonly<Record<string, BanEntry>> {
  const existing = entryOf(record, key);
  if (existing !== undefined && existing.until > entry.until) return record;
  // Computed keys define own properties, even for `__proto__`.
  return { ...record, [key]: entry };
}

function withoutKey(record: Readonly<Record<string, BanEntry>>, key: string): Readonly<Record<string, BanEntry>> {
  if (!Object.hasOwn(record, key)) return record;
  return Object.fromEntries(Object.entries(record).filter(([k]) => k !== key));
}

/**
 * Bans a peer ID, an IP, or both, from `nowMs` for `durationMs` (default 24 h, DESIGN §6): the
 * entry's `until` is `nowMs + durationMs`. Banning again keeps the later expiry (and its reason),
 * so an automatic short ban never shortens a longer one; use {@link unban} to lift a ban early.
 *
 * @throws RangeError if the target has neither `peerId` nor `ip`, the peer ID is empty, the IP is
 *   not an IP address, `durationMs` is not a positive number or `until` would not be finite.
 */
export function ban(list: BanList, target: BanTarget, nowMs: number, durationMs: number = DEFAULT_BAN_DURATION_MS, reason = 'manual'): BanList {
  if (target.peerId === undefined && target.ip === undefined) throw new RangeError('ban target needs a peerId or an ip');
  if (target.peerId === '') throw new RangeError('ban target has an empty peerId');
  const ip = targetIp(target);
  if (ip === null) throw new RangeError(`ban target ip is not an IP address: ${JSON.stringify(target.ip)}`);
  if (!(durationMs > 0)) throw new RangeError(`ban duration must be a positive number of ms, got ${durationMs}`);
  const until = nowMs + durationMs;
  if (!Number.isFinite(until)) throw new RangeError(`ban expiry must be a finite ms time, got ${until}`);
  const entry: BanEntry = { until, reason };
  const byPeerId = target.peerId === undefined ? list.byPeerId : withEntry(list.byPeerId, target.peerId, entry);
  const byIp = ip === undefined ? list.byIp : withEntry(list.byIp, ip, entry);
  return byPeerId === list.byPeerId && byIp === list.byIp ? list : { byPeerId, byIp };
}

/** Lifts the bans on the target's peer ID and/or IP (any spelling of it). Unknown targets leave the list as it is. */
export function unban(list: BanList, target: BanTarget): BanList {
  const ip = targetIp(target);
  const byPeerId = target.peerId === undefined ? list.byPeerId : withoutKey(list.byPeerId, target.peerId);
  const byIp = ip === undefined || ip === null ? list.byIp : withoutKey(list.byIp, ip);
  return byPeerId === list.byPeerId && byIp === list.byIp ? list : { byPeerId, byIp };
}

/**
 * The ban that applies to a peer ID or an IP at `nowMs` (the peer ID's first, then the IP's), or
 * `undefined`. An IP that is not an IP address matches nothing.
 */
export function findBan(list: BanList, target: BanTarget, nowMs: number): BanEntry | undefined {
  if (target.peerId !== undefined) {
    const entry = entryOf(list.byPeerId, target.peerId);
    if (entry !== undefined && nowMs < entry.until) return entry;
  }
  const ip = targetIp(target);
  if (typeof ip === 'string') {
    const entry = entryOf(list.byIp, ip);
    if (entry !== undefined && nowMs < entry.until) return entry;
  }
  return undefined;
}

/** Whether the peer ID or the IP is banned at `nowMs` (true while `nowMs < until`). */
export function isBanned(list: BanList, target: BanTarget, nowMs: number): boolean {
  return findBan(list, target, nowMs) !== undefined;
}

/** The bans active at `nowMs`: peer IDs then IPs, each sorted by expiry, then by key. */
export function activeBans(list: BanList, nowMs: number): BanListing[] {
  const byExpiry = (a: [string, BanEntry], b: [string, BanEntry]): number =>
    a[1].until - b[1].until || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
  const peers = Object.entries(list.byPeerId)
    .filter(([, e]) => nowMs < e.until)
    .sort(byExpiry)
    .map(([peerId, e]): BanListing => ({ by: 'peerId', peerId, until: e.until, reason: e.reason }));
  const ips = Object.entries(list.byIp)
    .filter(([, e]) => nowMs < e.until)
    .sort(byExpiry)
    .map(([ip, e]): BanListing => ({ by: 'ip', ip, until: e.until, reason: e.reason }));
  return [...peers, ...ips];
}

/** The list without the entries expired at `nowMs` (the same object when none has expired), so it stays small. */
export function pruneExpired(list: BanList, nowMs: number): BanList {
  const keep = (record: Readonly<Record<string, BanEntry>>): Readonly<Record<string, BanEntry>> => {
    const entries = Object.entries(record);
    const live = entries.filter(([, e]) => nowMs < e.until);
    return live.length === entries.length ? record : Object.fromEntries(live);
  };
  const byPeerId = keep(list.byPeerId);
  const byIp = keep(list.byIp);
  return byPeerId === list.byPeerId && byIp === list.byIp ? list : { byPeerId, byIp };
}

/**
 * Checks stored data (e.g. the result of `JSON.parse`) and returns it as a ban list with
 * canonical IP keys. Strict: the object has exactly `byPeerId` and `byIp`, each entry exactly
 * a finite number `until` and a string `reason`, peer IDs are non-empty and IP keys are IPs.
 *
 * @throws BanListFormatError naming the first bad field.
 */
export function parseBanList(value: unknown): BanList {
  if (!isPlainObject(value)) throw new BanListFormatError('ban list: expected an object');
  checkKeys(value, ['byPeerId', 'byIp'], 'ban list');
  const byPeerId: Record<string, BanEntry> = {};
  const byIp: Record<string, BanEntry> = {};
  for (const [field, out] of [['byPeerId', byPeerId], ['byIp', byIp]] as const) {
    const record = value[field];
    if (!isPlainObject(record)) throw new BanListFormatError(`ban list.${field}: expected an object`);
    for (const [key, raw] of Object.entries(record)) {
      const path = `ban list.${field}[${JSON.stringify(key)}]`;
      if (!isPlainObject(raw)) throw new BanListFormatError(`${path}: expected an object`);
      checkKeys(raw, ['until', 'reason'], path);
      const { until, reason } = raw;
      if (typeof until !== 'number' || !Number.isFinite(until)) throw new BanListFormatError(`${path}.until: expected a finite number`);
      if (typeof reason !== 'string') throw new BanListFormatError(`${path}.reason: expected a string`);
      let outKey = key;
      if (field === 'byPeerId') {
        if (key === '') throw new BanListFormatError(`${path}: empty peer ID`);
      } else {
        const ip = normalizeIp(key);
        if (ip === null) throw new BanListFormatError(`${path}: not an IP address`);
        outKey = ip;
      }
      const existing = entryOf(out, outKey);
      if (existing === undefined || existing.until < until) {
        Object.defineProperty(out, outKey, { value: { until, reason }, enumerable: true, writable: true, configurable: true });
      }
    }
  }
  return { byPeerId, byIp };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkKeys(value: Record<string, unknown>, allowed: readonly string[], path: string): void {
  for (const key of allowed) {
    if (!Object.hasOwn(value, key)) throw new BanListFormatError(`${path}: missing field ${key}`);
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw new BanListFormatError(`${path}: unknown field ${key}`);
  }
}
