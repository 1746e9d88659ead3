// The call frames of the WebSocket (docs/websocket.md, "Calls"), checked:
// `parseFrame` passes every `call.*` frame through untyped, and this turns the
// ones the call client acts on into typed values (null for anything else).

import type { ServerFrame } from '../live/protocol';

/** Call frames the server sends. */
export type CallFrame =
  | { type: 'call.participants'; room_id: string; user_ids: string[]; streams: Record<string, string> }
  | { type: 'call.config'; room_id: string; ice_servers: RTCIceServer[] }
  | { type: 'call.answer'; room_id: string; sdp: string }
  | { type: 'call.offer'; room_id: string; sdp: string }
  | { type: 'call.ended'; room_id: string }
  | { type: 'call.candidate'; room_id: string; candidate: string; sdp_mid: string | null; sdp_mline_index: number | null };

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

/** An `RTCIceServer` list as `call.config` carries it; null when malformed. */
export function parseIceServers(value: unknown): RTCIceServer[] | null {
  if (!Array.isArray(value)) return null;
  const servers: RTCIceServer[] = [];
  for (const item of value as unknown[]) {
    if (typeof item !== 'object' || item === null) return null;
    const { urls, username, credential } = item as Record<string, unknown>;
    if (typeof urls !== 'string' && !isStringArray(urls)) return null;
    servers.push({
      urls,
      ...(typeof username === 'string' ? { username } : {}),
      ...(typeof credential === 'string' ? { credential } : {}),
    });
  }
  return servers;
}

/** The ICE servers of a `GET /voip/turnServer` answer (TURN only; none when it is empty). */
export function iceServersFromTurn(turn: { uris?: string[]; username?: string; password?: string }): RTCIceServer[] {
  if (!turn.uris?.length || turn.username === undefined || turn.password === undefined) return [];
  return [{ urls: turn.uris, username: turn.username, credential: turn.password }];
}

/** The call frame in `frame`, or null when it is not one (or is malformed). */
export function parseCallFrame(frame: ServerFrame): CallFrame | null {
  if (!frame.type.startsWith('call.')) return null;
  const fields = frame as Record<string, unknown>;
  const roomId = fields.room_id;
  if (typeof roomId !== 'string') return null;
  switch (frame.type) {
    case 'call.participants': {
      const { user_ids: userIds, streams } = fields;
      if (!isStringArray(userIds) || typeof streams !== 'object' || streams === null) return null;
      const owners = Object.entries(streams as Record<string, unknown>);
      if (!owners.every(([, user]) => typeof user === 'string')) return null;
      return { type: 'call.participants', room_id: roomId, user_ids: userIds, streams: Object.fromEntries(owners) as Record<string, string> };
    }
    case 'call.config': {
      const servers = parseIceServers(fields.ice_servers);
      return servers ? { type: 'call.config', room_id: roomId, ice_servers: servers } : null;
    }
    case 'call.answer':
    case 'call.offer':
      return typeof fields.sdp === 'string' ? { type: frame.type, room_id: roomId, sdp: fields.sdp } : null;
    case 'call.ended':
      return { type: 'call.ended', room_id: roomId };
    case 'call.candidate': {
      const { candidate, sdp_mid: mid, sdp_mline_index: index } = fields;
      if (typeof candidate !== 'string') return null;
      return {
        type: 'call.candidate',
        room_id: roomId,
        candidate,
        sdp_mid: typeof mid === 'string' ? mid : null,
        sdp_mline_index: typeof index === 'number' && Number.isInteger(index) && index >= 0 ? index : null,
      };
    }
    default:
      return null;
  }
}
