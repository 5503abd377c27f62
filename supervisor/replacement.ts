/**
 * Which known peer takes the place of a temporary connection replaced for Critical health
 * (issue 5 item 2). Pure.
 */

/** What the choice looks at of one stored peer. */
export interface ReplacementCandidate {
  readonly peerId: string;
  readonly addresses: readonly string[];
  /** Peer score in [0, 1] (`peerScore`). */
  readonly score: number;
  readonly lastSeenMs: number | null;
}

/**
 * The address to dial instead: among stored peers with an address that are not `excluded`
 * (connected now, the replaced peer itself, banned), the best score, then the most recently
 * seen, then the smallest peer ID. `undefined` when there is none.
 */
export function pickReplacement(
  candidates: Iterable<ReplacementCandidate>,
  excluded: (peerId: string, address: string) => boolean,
): string | undefined {
  let best: { candidate: ReplacementCandidate; address: string } | undefined;
  for (const candidate of candidates) {
    const address = candidate.addresses.find((a) => !excluded(candidate.peerId, a));
    if (address === undefined || excluded(candidate.peerId, address)) continue;
    if (!best || better(candidate, best.candidate)) best = { candidate, address };
  }
  return best?.address;
}

function better(a: ReplacementCandidate, b: ReplacementCandidate): boolean {
  if (a.score !== b.score) return a.score > b.score;
  const seenA = a.lastSeenMs ?? -Infinity;
  const seenB = b.lastSeenMs ?? -Infinity;
  if (seenA !== seenB) return seenA > seenB;
  return a.peerId < b.peerId;
}
