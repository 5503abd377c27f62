/**
 * A peer's reputation score for the peer store (issue 4 item 8): how often its links ended
 * cleanly. Pure. The health score of issue 5 judges a live connection; this one judges the peer
 * across connections and restarts.
 */

/** Reasons that end a link without blaming the peer (DESIGN §2): a goodbye, or a replacement. */
const CLEAN_ENDS = new Set(['Normal', 'NetworkRestructure']);

/**
 * Score in [0, 1]: `(clean + 1) / (ends + 2)` over the recorded link ends (Laplace's rule of
 * succession), so a peer with no history scores 0.5, every clean end pulls it towards 1 and
 * every Timeout, ResourceConstraint, ProtocolViolation or PeerBanned towards 0. Only the history
 * the store keeps counts (its newest `maxHistory` entries).
 */
export function peerScore(history: readonly { readonly reason: string }[]): number {
  let clean = 0;
  for (const end of history) if (CLEAN_ENDS.has(end.reason)) clean++;
  return (clean + 1) / (history.length + 2);
}
