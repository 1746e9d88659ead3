// The frames of TeaTime's WebSocket (`/_teatime/ws`, docs/websocket.md).
//
// Calls ride the same socket (`call.join`, `call.answer`, `call.offer`,
// `call.candidate`, `call.leave`, `call.participants`, `call.config`): the
// call client (src/call/) subscribes to those frames through
// `LiveSocket.subscribe`, types them (`call/frames.ts`) and sends its own with
// `LiveSocket.send`, without the chat state knowing about them.

/** Frames the server sends that the chat client acts on. */
export type ChatFrame =
  | { type: 'auth.success'; user_id: string; device_id: string; token: string }
  | { type: 'message.new'; room_id: string; event: unknown; token: string }
  | { type: 'membership'; room_id: string; membership: string }
  | { type: 'invite'; room_id: string; invite_state: unknown[] }
  | { type: 'typing'; room_id: string; user_ids: string[] }
  | { type: 'receipt'; room_id: string; content: Record<string, unknown> }
  | { type: 'message.sent'; txn_id: string; event_id: string }
  | { type: 'room.joined'; room_id: string }
  | { type: 'room.left'; room_id: string }
  | { type: 'error'; errcode: string; error: string; re?: string }
  | { type: 'pong' };

/** Any frame from the server: the chat frames, and others (calls) by type. */
export type ServerFrame = ChatFrame | { type: `call.${string}`; [field: string]: unknown };

/** Frames the client sends. */
export type ClientFrame =
  | { type: 'auth'; token: string; since?: string }
  | { type: 'message.send'; room_id: string; txn_id: string; content: Record<string, unknown>; event_type?: string }
  | { type: 'typing.start'; room_id: string; timeout_ms?: number }
  | { type: 'typing.stop'; room_id: string }
  | { type: 'receipt.send'; room_id: string; event_id: string }
  | { type: 'room.join'; room: string; via?: string[] }
  | { type: 'room.leave'; room_id: string }
  | { type: 'ping' }
  | { type: `call.${string}`; [field: string]: unknown };

const stringFields: Partial<Record<ChatFrame['type'], string[]>> = {
  'auth.success': ['user_id', 'device_id', 'token'],
  'message.new': ['room_id', 'token'],
  membership: ['room_id', 'membership'],
  invite: ['room_id'],
  typing: ['room_id'],
  receipt: ['room_id'],
  'message.sent': ['txn_id', 'event_id'],
  'room.joined': ['room_id'],
  'room.left': ['room_id'],
  error: ['errcode'],
};

/** Parses a text frame; null for anything malformed or of an unknown type. */
export function parseFrame(data: string): ServerFrame | null {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const frame = value as Record<string, unknown>;
  const type = frame.type;
  if (typeof type !== 'string') return null;
  if (type.startsWith('call.')) return frame as ServerFrame;
  if (type === 'pong') return { type };
  const required = stringFields[type as ChatFrame['type']];
  if (!required) return null;
  if (!required.every((field) => typeof frame[field] === 'string')) return null;
  if (type === 'typing' && !Array.isArray(frame.user_ids)) return null;
  if (type === 'invite' && !Array.isArray(frame.invite_state)) return null;
  if (type === 'receipt' && (typeof frame.content !== 'object' || frame.content === null)) return null;
  if (type === 'error' && typeof frame.error !== 'string') frame.error = '';
  return frame as ServerFrame;
}
