/**
 * Which of two live connections to the same peer survives (DESIGN §3: "when two peers dial each
 * other at once, both keep the same one connection by a deterministic rule"). Pure.
 *
 * The rule: the connection dialed by the peer with the lower peer ID (plain string order of the
 * text form) survives. Both ends compute the same answer without talking: the lower peer keeps
 * its outbound connection, the higher keeps its inbound one, and these are the same socket. When
 * both connections have the same direction (two dials of ours, or two of the peer's), the one
 * identified first survives.
 */

/** What the rule looks at of one connection. */
export interface DuplicateCandidate {
  readonly connectionId: string;
  readonly direction: 'inbound' | 'outbound';
}

/**
 * @param localPeerId our peer ID (text form)
 * @param remotePeerId the peer's ID (text form)
 * @param existing the connection identified first
 * @param arriving the connection identified second
 * @returns the connection that survives; the caller closes the other with NetworkRestructure.
 */
export function chooseSurvivor(
  localPeerId: string,
  remotePeerId: string,
  existing: DuplicateCandidate,
  arriving: DuplicateCandidate,
): DuplicateCandidate {
  if (existing.direction === arriving.direction) return existing;
  const keptDirection = localPeerId < remotePeerId ? 'outbound' : 'inbound';
  return existing.direction === keptDirection ? existing : arriving;
}
