/**
 * Network groups (DESIGN §3 "Eviction", issue 4 item 4): peers whose addresses share a netgroup are
 * likely run by one operator, so diversity across netgroups is what eviction protects. The idea is
 * Bitcoin Core's `CNetAddr::GetGroup` / `NetGroupManager::GetGroup` (src/netgroup.cpp): IPv4 by /16,
 * IPv6 by /32, local addresses in one group of their own. Pure: string in, string out, no DNS.
 */
import { isIP } from 'node:net';

/** The one group of every loopback address (127.0.0.0/8, `::1`, `::ffff:127.x.y.z`); after Core's NET_LOCAL group. */
export const LOOPBACK_NETGROUP = 'loopback';

/**
 * The one group of every input that is not an IP address (a host name, garbage, an empty string).
 * One shared group, not one per input, so that malformed addresses look alike (and are evicted
 * first as a crowd) rather than each looking like a rare, diverse network worth protecting.
 */
export const UNPARSABLE_NETGROUP = 'unparsable';

/**
 * The netgroup of an IP address (no port, no brackets):
 * - IPv4 → its /16, e.g. `10.1.2.3` → `10.1.0.0/16`;
 * - IPv6 → its /32 in lowercase compressed form, e.g. `2001:DB8:1::5` → `2001:db8::/32`;
 *   a zone index (`fe80::1%eth0`) is ignored;
 * - IPv4-mapped IPv6 (`::ffff:1.2.3.4` or `::ffff:102:304`) → the /16 of the IPv4 address, so one
 *   host seen over a dual-stack socket lands in the same group as over IPv4;
 * - loopback → {@link LOOPBACK_NETGROUP}; anything `node:net` `isIP` rejects → {@link UNPARSABLE_NETGROUP}.
 *
 * Never throws. Not covered: Core's extra mappings (6to4, Teredo, Tor/I2P/CJDNS, ASN maps).
 */
export function netgroupOf(ip: string): string {
  const withoutZone = stripZone(ip);
  switch (isIP(withoutZone)) {
    case 4:
      return ipv4Group(withoutZone.split('.').map(Number));
    case 6:
      return ipv6Group(parseIPv6(withoutZone));
    default:
      return UNPARSABLE_NETGROUP;
  }
}

/**
 * The host part of a socket's remote address: `host:port` → `host`, `[v6]:port` → `v6`; a bare
 * address (IPv4 without port, or IPv6 without brackets, which has more than one `:`) is returned
 * as is. Never throws; the result may still be unparsable.
 */
export function hostOfRemoteAddress(remoteAddress: string): string {
  if (remoteAddress.startsWith('[')) {
    const end = remoteAddress.indexOf(']');
    return end === -1 ? remoteAddress : remoteAddress.slice(1, end);
  }
  const firstColon = remoteAddress.indexOf(':');
  if (firstColon !== -1 && firstColon === remoteAddress.lastIndexOf(':')) return remoteAddress.slice(0, firstColon);
  return remoteAddress;
}

/** The netgroup of a socket's remote address (`host:port` or `[v6]:port`): {@link netgroupOf} of its host. */
export function netgroupOfRemoteAddress(remoteAddress: string): string {
  return netgroupOf(hostOfRemoteAddress(remoteAddress));
}

function stripZone(ip: string): string {
  // Only IPv6 carries a zone index; for anything else the '%' makes it unparsable, as it should.
  const percent = ip.indexOf('%');
  return percent !== -1 && ip.includes(':') ? ip.slice(0, percent) : ip;
}

function ipv4Group(octets: readonly number[]): string {
  const [a = 0, b = 0] = octets;
  if (a === 127) return LOOPBACK_NETGROUP;
  return `${a}.${b}.0.0/16`;
}

function ipv6Group(hextets: readonly number[]): string {
  const isMapped = hextets.slice(0, 5).every((h) => h === 0) && hextets[5] === 0xffff;
  if (isMapped) {
    const hi = hextets[6] ?? 0;
    const lo = hextets[7] ?? 0;
    return ipv4Group([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
  }
  const isLoopback = hextets.slice(0, 7).every((h) => h === 0) && hextets[7] === 1;
  if (isLoopback) return LOOPBACK_NETGROUP;
  const h0 = hextets[0] ?? 0;
  const h1 = hextets[1] ?? 0;
  // RFC 5952 text form of the /32 prefix: the zero run after it is compressed to '::'.
  if (h0 === 0 && h1 === 0) return '::/32';
  if (h1 === 0) return `${h0.toString(16)}::/32`;
  return `${h0.toString(16)}:${h1.toString(16)}::/32`;
}

/** Eight 16-bit groups of an address `isIP` has already accepted as IPv6 (zone stripped). */
function parseIPv6(ip: string): number[] {
  const toHextets = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        // An embedded dotted quad (only allowed last) is two groups.
        const [a = 0, b = 0, c = 0, d = 0] = piece.split('.').map(Number);
        out.push((a << 8) | b, (c << 8) | d);
      } else {
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const doubleColon = ip.indexOf('::');
  if (doubleColon === -1) return toHextets(ip);
  const head = toHextets(ip.slice(0, doubleColon));
  const tail = toHextets(ip.slice(doubleColon + 2));
  const zeros = new Array<number>(Math.max(0, 8 - head.length - tail.length)).fill(0);
  return [...head, ...zeros, ...tail];
}
