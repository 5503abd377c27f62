/**
 * yamux stream multiplexing (HashiCorp yamux spec.md) over one connected byte `Duplex`.
 * See {@link YamuxSession} and {@link YamuxStream}.
 */
export {
  FrameType,
  Flag,
  GoAwayCode,
  HEADER_LENGTH,
  INITIAL_STREAM_WINDOW,
  KNOWN_FLAGS,
  MAX_UINT32,
  YAMUX_VERSION,
  decodeHeader,
  encodeHeader,
  isFrameType,
  writeHeader,
} from './frame.js';
export type { FrameHeader, FrameHeaderInit } from './frame.js';
export { StreamReset, YamuxStream } from './stream.js';
export type { StreamDirection } from './stream.js';
export {
  DEFAULT_MAX_PENDING_BYTES,
  DEFAULT_MAX_SEND_FRAME_LENGTH,
  DEFAULT_MAX_STREAM_WINDOW,
  DEFAULT_MAX_STREAMS,
  DEFAULT_WINDOW_GROWTH_BUDGET,
  StreamOpenRefused,
  YamuxSession,
} from './session.js';
export type { StreamOpenRefusedReason, YamuxSessionEvents, YamuxSessionOptions } from './session.js';
