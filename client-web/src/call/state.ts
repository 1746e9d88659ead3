// What the client knows about calls, as pure functions from (state, action)
// to state: who is in each room's call (from `call.participants`), and the
// one call this client is in — its phase, whose MediaStream is whose, the
// microphone and camera switches, and why it ended when it ended badly.
// `manager.ts` is the imperative shell that owns the peer connection.

import { describeError, MatrixError } from '../api/client';
import type { ServerFrame } from '../live/protocol';
import { parseCallFrame } from './frames';

/** A room's call as the server last announced it. */
export interface RoomCall {
  /** Everyone in the call, ordered by id. */
  userIds: string[];
  /** MediaStream id (the `a=msid` of their tracks) -> user id. */
  streams: Record<string, string>;
}

/**
 * `starting`: opening the camera and microphone and making the offer;
 * `joining`: `call.join` sent, waiting for the answer; `joined`: answered.
 */
export type CallPhase = 'starting' | 'joining' | 'joined';

/** The call this client takes part in. */
export interface ActiveCall {
  roomId: string;
  phase: CallPhase;
  /** The server has listed us among the participants since we joined. */
  listed: boolean;
  /** The peer connection's state. */
  connection: RTCPeerConnectionState;
  hasAudio: boolean;
  hasVideo: boolean;
  micOn: boolean;
  cameraOn: boolean;
  /** Ids of the remote MediaStreams that have tracks. */
  remoteStreams: string[];
}

export interface CallsState {
  me: string;
  rooms: Record<string, RoomCall>;
  active: ActiveCall | null;
  /** The last failure, shown in its room until dismissed or the next join. */
  error: { roomId: string; message: string } | null;
}

export type CallAction =
  | { type: 'start'; roomId: string }
  | { type: 'media'; hasAudio: boolean; hasVideo: boolean }
  | { type: 'joinSent' }
  | { type: 'frame'; frame: ServerFrame }
  | { type: 'connection'; state: RTCPeerConnectionState }
  | { type: 'streamAdded'; streamId: string }
  | { type: 'streamRemoved'; streamId: string }
  | { type: 'toggleMic' }
  | { type: 'toggleCamera' }
  | { type: 'failed'; message: string }
  | { type: 'left' }
  | { type: 'dismissError' };

export function initialCalls(me: string): CallsState {
  return { me, rooms: {}, active: null, error: null };
}

/** What the client frame `re` was trying to do, for error messages. */
const attempts: Record<string, string> = {
  'call.join': 'Could not join the call',
  'call.answer': 'The call could not take in a change',
  'call.candidate': 'The call could not use a network path',
  'call.leave': 'Could not leave the call',
};

/** A readable sentence for an `error` frame answering the call frame `re`. */
export function describeCallError(re: string, errcode: string, error: string): string {
  const what = attempts[re] ?? 'The call failed';
  if (re === 'call.join' && errcode === 'M_FORBIDDEN' && !error) return `${what}: only members of the room may join its call`;
  return `${what}: ${describeError(new MatrixError(0, errcode, error))}`;
}

/** Why the browser could not open the camera or microphone, in words. */
export function describeMediaError(error: unknown): string {
  const name = error instanceof Error || error instanceof DOMException ? error.name : '';
  switch (name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'The browser was not allowed to use the camera and microphone';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera or microphone was found';
    case 'NotReadableError':
    case 'AbortError':
      return 'The camera or microphone is in use by another application';
    default:
      return describeError(error);
  }
}

const ended = {
  connectionFailed: 'The call connection failed (the network between you and the server may block it)',
  dropped: 'You were disconnected from the call',
  socketLost: 'The connection to the server was interrupted, which ended the call; join it again',
  replaced: 'You joined this call from another device or tab, which ended it here',
};

function end(state: CallsState, message: string | null): CallsState {
  if (!state.active) return state;
  return { ...state, active: null, error: message ? { roomId: state.active.roomId, message } : state.error };
}

function withActive(state: CallsState, change: (active: ActiveCall) => ActiveCall | null): CallsState {
  if (!state.active) return state;
  const active = change(state.active);
  return active === state.active ? state : { ...state, active };
}

function applyServerFrame(state: CallsState, frame: ServerFrame): CallsState {
  // A new socket (a reconnect): the server took us out of our calls when the
  // old one closed, and announces the calls under way afresh.
  if (frame.type === 'auth.success') return { ...end(state, ended.socketLost), rooms: {} };
  if (frame.type === 'error') {
    const { active } = state;
    const re = frame.re ?? '';
    if (!active || !re.startsWith('call.') || re === 'call.leave') return state;
    const message = describeCallError(re, frame.errcode, frame.error);
    if (re === 'call.join') return active.phase === 'joining' ? end(state, message) : state;
    // Not in the call any more: the server dropped us.
    if (frame.errcode === 'M_NOT_FOUND') return end(state, message);
    return { ...state, error: { roomId: active.roomId, message } };
  }
  const call = parseCallFrame(frame);
  if (!call) return state;
  const ours = state.active?.roomId === call.room_id;
  if (call.type === 'call.participants') {
    const { [call.room_id]: _, ...others } = state.rooms;
    const rooms = call.user_ids.length > 0 ? { ...others, [call.room_id]: { userIds: call.user_ids, streams: call.streams } } : others;
    const next = { ...state, rooms };
    if (!ours || !next.active || next.active.phase === 'starting') return next;
    const listed = call.user_ids.includes(state.me);
    // Announcements are in order: once we were listed, missing means removed.
    if (next.active.listed && !listed) return end(next, ended.dropped);
    return listed && !next.active.listed ? { ...next, active: { ...next.active, listed } } : next;
  }
  if (call.type === 'call.ended' && ours) return end(state, ended.replaced);
  if (call.type === 'call.answer' && ours) {
    return withActive(state, (active) => (active.phase === 'joining' ? { ...active, phase: 'joined' } : active));
  }
  return state;
}

export function reduceCalls(state: CallsState, action: CallAction): CallsState {
  switch (action.type) {
    case 'start':
      if (state.active) return state;
      return {
        ...state,
        error: null,
        active: {
          roomId: action.roomId,
          phase: 'starting',
          listed: false,
          connection: 'new',
          hasAudio: false,
          hasVideo: false,
          micOn: false,
          cameraOn: false,
          remoteStreams: [],
        },
      };
    case 'media':
      return withActive(state, (active) => ({
        ...active,
        hasAudio: action.hasAudio,
        hasVideo: action.hasVideo,
        micOn: action.hasAudio,
        cameraOn: action.hasVideo,
      }));
    case 'joinSent':
      return withActive(state, (active) => (active.phase === 'starting' ? { ...active, phase: 'joining' } : active));
    case 'frame':
      return applyServerFrame(state, action.frame);
    case 'connection':
      if (action.state === 'failed') return end(state, ended.connectionFailed);
      return withActive(state, (active) => (active.connection === action.state ? active : { ...active, connection: action.state }));
    case 'streamAdded':
      return withActive(state, (active) =>
        active.remoteStreams.includes(action.streamId) ? active : { ...active, remoteStreams: [...active.remoteStreams, action.streamId] },
      );
    case 'streamRemoved':
      return withActive(state, (active) =>
        active.remoteStreams.includes(action.streamId)
          ? { ...active, remoteStreams: active.remoteStreams.filter((id) => id !== action.streamId) }
          : active,
      );
    case 'toggleMic':
      return withActive(state, (active) => (active.hasAudio ? { ...active, micOn: !active.micOn } : active));
    case 'toggleCamera':
      return withActive(state, (active) => (active.hasVideo ? { ...active, cameraOn: !active.cameraOn } : active));
    case 'failed':
      return end(state, action.message);
    case 'left':
      return end(state, null);
    case 'dismissError':
      return state.error ? { ...state, error: null } : state;
  }
}

/** One other participant on the call screen, with their stream once it arrived. */
export interface Tile {
  userId: string;
  streamId: string | null;
}

/** The other participants of our call, each with the MediaStream that is theirs (if it came). */
export function remoteTiles(state: CallsState): Tile[] {
  const { active } = state;
  if (!active) return [];
  const call = state.rooms[active.roomId];
  if (!call) return [];
  return call.userIds
    .filter((userId) => userId !== state.me)
    .map((userId) => ({
      userId,
      streamId: active.remoteStreams.find((id) => call.streams[id] === userId) ?? null,
    }));
}

/** Who is in the room's call (ourselves included when the server listed us). */
export function participantsOf(state: CallsState, roomId: string): string[] {
  return state.rooms[roomId]?.userIds ?? [];
}
