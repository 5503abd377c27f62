/**
 * Messages between the demo's parent process and its node processes (over the `fork` IPC channel).
 */

/** One row of a node's summary: its connection to one peer. */
export interface SummaryRow {
  readonly peerId: string;
  readonly state: string;
  readonly rttMs: number | null;
  /** Health score in [0, 1] and its category (Excellent … Critical); null before the first sample. */
  readonly healthScore: number | null;
  readonly healthCategory: string | null;
}

/** From a node process to the parent. */
export type NodeMessage =
  | { type: 'ready'; peerId: string; listenAddress: string }
  | {
      type: 'transition';
      t: number;
      peerId: string | null;
      address: string | null;
      from: string | null;
      to: string;
      reason: string | null;
      rttMs: number | null;
    }
  | { type: 'summary'; rows: SummaryRow[] };

/** From the parent to a node process. */
export type ParentMessage =
  | { type: 'peers'; addresses: string[] }
  | { type: 'summary' }
  | { type: 'stop' };
