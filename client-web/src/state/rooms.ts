// The client's picture of its rooms, built from the initial `/sync` and then
// from WebSocket frames. Pure functions: each returns a new state.

import type { ChatFrame } from '../live/protocol';
import { asEvent, asEvents, asStripped, isMessage, isObjectValue, text, type MatrixEvent } from './events';
import { appendEvents, emptyTimeline, prependHistory, visibleItems, type Timeline } from './timeline';

export interface Member {
  membership: string;
  displayName?: string;
}

export interface Room {
  roomId: string;
  membership: 'join' | 'invite';
  name?: string;
  members: Record<string, Member>;
  /** The invite (or our own member event) marked the room as a direct chat. */
  directHint: boolean;
  inviter?: string;
  timeline: Timeline;
  /** Messages from others not yet read. */
  unread: number;
  /** Who is typing, other than us. */
  typing: string[];
  /** For each member, the event they have read up to. */
  receipts: Record<string, string>;
  /** The member state has been read in full (from /sync or /state). */
  stateLoaded: boolean;
}

export interface ClientState {
  userId: string;
  rooms: Record<string, Room>;
  /** `m.direct` account data: user id -> direct rooms with them. */
  direct: Record<string, string[]>;
  /** Where the WebSocket resumes: the last token seen. */
  resumeToken: string | null;
  openRoomId: string | null;
  /** Rooms this user was removed from, shown once as a notice. */
  notice: string | null;
}

export function initialState(userId: string): ClientState {
  return { userId, rooms: {}, direct: {}, resumeToken: null, openRoomId: null, notice: null };
}

function newRoom(roomId: string, membership: Room['membership']): Room {
  return {
    roomId,
    membership,
    members: {},
    directHint: false,
    timeline: emptyTimeline,
    unread: 0,
    typing: [],
    receipts: {},
    stateLoaded: false,
  };
}

/** Applies a state event to the room's name and members. */
function applyState(room: Room, event: { type: string; state_key?: string; content: Record<string, unknown> }, me: string): Room {
  if (event.type === 'm.room.name') {
    const name = text(event.content, 'name');
    const { name: _old, ...rest } = room;
    return name ? { ...rest, name } : rest;
  }
  if (event.type === 'm.room.member' && event.state_key !== undefined) {
    const membership = text(event.content, 'membership') ?? 'leave';
    const displayName = text(event.content, 'displayname');
    const members = { ...room.members, [event.state_key]: { membership, ...(displayName ? { displayName } : {}) } };
    const directHint = room.directHint || (event.state_key === me && event.content.is_direct === true);
    return { ...room, members, directHint };
  }
  return room;
}

function applyStates(room: Room, events: readonly MatrixEvent[], me: string): Room {
  return events.reduce((r, e) => (e.state_key !== undefined ? applyState(r, e, me) : r), room);
}

/** Receipts content (`{eventId: {"m.read": {userId: {...}}}}`) -> who read what. */
function readers(content: Record<string, unknown>): [string, string][] {
  const found: [string, string][] = [];
  for (const [eventId, kinds] of Object.entries(content)) {
    if (!isObjectValue(kinds)) continue;
    for (const kind of ['m.read', 'm.read.private']) {
      const users = kinds[kind];
      if (!isObjectValue(users)) continue;
      for (const userId of Object.keys(users)) found.push([userId, eventId]);
    }
  }
  return found;
}

/** Messages from others after `eventId` among the loaded events. */
function unreadAfter(room: Room, eventId: string, me: string): number {
  const items = room.timeline.items;
  const at = items.findIndex((item) => item.event.event_id === eventId);
  if (at < 0) return room.unread;
  return items.slice(at + 1).filter((item) => isMessage(item.event) && item.event.sender !== me).length;
}

function applyReceipts(room: Room, content: Record<string, unknown>, me: string): Room {
  let next = room;
  for (const [userId, eventId] of readers(content)) {
    next = { ...next, receipts: { ...next.receipts, [userId]: eventId } };
    if (userId === me) next = { ...next, unread: unreadAfter(next, eventId, me) };
  }
  return next;
}

function applyEphemeral(room: Room, events: readonly unknown[], me: string): Room {
  let next = room;
  for (const value of events) {
    if (!isObjectValue(value) || !isObjectValue(value.content)) continue;
    if (value.type === 'm.typing') {
      const ids = value.content.user_ids;
      next = { ...next, typing: Array.isArray(ids) ? ids.filter((id): id is string => typeof id === 'string' && id !== me) : [] };
    } else if (value.type === 'm.receipt') {
      next = applyReceipts(next, value.content, me);
    }
  }
  return next;
}

function parseDirect(content: unknown): Record<string, string[]> {
  if (!isObjectValue(content)) return {};
  const direct: Record<string, string[]> = {};
  for (const [userId, rooms] of Object.entries(content)) {
    if (Array.isArray(rooms)) direct[userId] = rooms.filter((r): r is string => typeof r === 'string');
  }
  return direct;
}

/** Appends timeline events: state changes, unread counts, typing cleared for senders. */
function addTimelineEvents(room: Room, events: readonly MatrixEvent[], me: string, isOpen: boolean): Room {
  const fresh = events.filter((e) => !room.timeline.items.some((item) => item.event.event_id === e.event_id));
  let next = applyStates(room, fresh, me);
  next = { ...next, timeline: appendEvents(next.timeline, fresh) };
  for (const event of fresh) {
    if (!isMessage(event)) continue;
    if (event.sender === me) next = { ...next, unread: 0 };
    else if (!isOpen) next = { ...next, unread: next.unread + 1 };
  }
  return next;
}

/** The shape of a `/sync` answer the state reads (as the generated schema declares it). */
export interface SyncLike {
  next_batch: string;
  rooms: {
    join: Record<string, {
      timeline: { events: unknown[]; prev_batch?: string };
      state: { events: unknown[] };
      ephemeral: { events: unknown[] };
      unread_notifications: { notification_count: number };
    }>;
    invite: Record<string, { invite_state: { events: unknown[] } }>;
    leave: Record<string, unknown>;
  };
  account_data: { events: unknown[] };
}

function withInvite(state: ClientState, roomId: string, inviteState: readonly unknown[]): ClientState {
  let room = newRoom(roomId, 'invite');
  for (const value of inviteState) {
    const event = asStripped(value);
    if (!event) continue;
    room = applyState(room, event, state.userId);
    if (event.type === 'm.room.member' && event.state_key === state.userId) room = { ...room, inviter: event.sender };
  }
  return { ...state, rooms: { ...state.rooms, [roomId]: room } };
}

function withoutRoom(state: ClientState, roomId: string): ClientState {
  const { [roomId]: _gone, ...rooms } = state.rooms;
  return { ...state, rooms, openRoomId: state.openRoomId === roomId ? null : state.openRoomId };
}

/** The first (or an incremental) `/sync`. */
export function applySync(state: ClientState, sync: SyncLike): ClientState {
  let next: ClientState = { ...state, resumeToken: sync.next_batch };
  for (const value of sync.account_data.events) {
    if (isObjectValue(value) && value.type === 'm.direct') next = { ...next, direct: parseDirect(value.content) };
  }
  for (const [roomId, joined] of Object.entries(sync.rooms.join)) {
    const existing = next.rooms[roomId];
    let room: Room = existing?.membership === 'join' ? existing : newRoom(roomId, 'join');
    room = applyStates(room, asEvents(joined.state.events), next.userId);
    room = addTimelineEvents(room, asEvents(joined.timeline.events), next.userId, next.openRoomId === roomId);
    if (!existing) {
      room = {
        ...room,
        stateLoaded: true,
        unread: joined.unread_notifications.notification_count,
        timeline: { ...room.timeline, prevBatch: joined.timeline.prev_batch ?? null },
      };
    }
    room = applyEphemeral(room, joined.ephemeral.events, next.userId);
    next = { ...next, rooms: { ...next.rooms, [roomId]: room } };
  }
  for (const [roomId, invited] of Object.entries(sync.rooms.invite)) {
    next = withInvite(next, roomId, invited.invite_state.events);
  }
  for (const roomId of Object.keys(sync.rooms.leave)) next = withoutRoom(next, roomId);
  return next;
}

function updateRoom(state: ClientState, roomId: string, update: (room: Room) => Room): ClientState {
  const room = state.rooms[roomId];
  if (!room) return state;
  return { ...state, rooms: { ...state.rooms, [roomId]: update(room) } };
}

/** One frame of the WebSocket. */
export function applyFrame(state: ClientState, frame: ChatFrame): ClientState {
  switch (frame.type) {
    case 'auth.success':
      return { ...state, resumeToken: frame.token };
    case 'message.new': {
      const event = asEvent(frame.event);
      let next: ClientState = { ...state, resumeToken: frame.token };
      if (!event) return next;
      const own = event.type === 'm.room.member' && event.state_key === state.userId;
      const membership = own ? text(event.content, 'membership') : undefined;
      if (membership === 'leave' || membership === 'ban') {
        const room = next.rooms[frame.room_id];
        if (room?.membership === 'join' && event.sender !== state.userId) {
          next = { ...next, notice: `You were removed from ${roomName(room, state)}` };
        }
        return withoutRoom(next, frame.room_id);
      }
      if (membership === 'invite') return withInvite(next, frame.room_id, [event]);
      const existing = next.rooms[frame.room_id];
      const room = existing?.membership === 'join' ? existing : { ...newRoom(frame.room_id, 'join'), ...(existing?.directHint ? { directHint: true } : {}) };
      const updated = addTimelineEvents(room, [event], state.userId, state.openRoomId === frame.room_id);
      return { ...next, rooms: { ...next.rooms, [frame.room_id]: updated } };
    }
    case 'membership':
      return frame.membership === 'leave' || frame.membership === 'ban' ? withoutRoom(state, frame.room_id) : state;
    case 'invite':
      return state.rooms[frame.room_id]?.membership === 'join' ? state : withInvite(state, frame.room_id, frame.invite_state);
    case 'typing':
      return updateRoom(state, frame.room_id, (room) => ({ ...room, typing: frame.user_ids.filter((id) => id !== state.userId) }));
    case 'receipt':
      return updateRoom(state, frame.room_id, (room) => applyReceipts(room, frame.content, state.userId));
    default:
      return state;
  }
}

/** The room's member state, read with `/state` when the room is new to this client. */
export function applyRoomState(state: ClientState, roomId: string, events: readonly unknown[]): ClientState {
  return updateRoom(state, roomId, (room) => ({ ...applyStates(room, asEvents(events), state.userId), stateLoaded: true }));
}

/** Older history from `/messages?dir=b` (newest first), with the next token. */
export function applyHistory(state: ClientState, roomId: string, chunk: readonly unknown[], end: string | null): ClientState {
  return updateRoom(state, roomId, (room) => ({ ...room, timeline: prependHistory(room.timeline, asEvents(chunk), end) }));
}

/** The person opened a room: its messages count as read. */
export function openRoom(state: ClientState, roomId: string | null): ClientState {
  const next = { ...state, openRoomId: roomId };
  return roomId ? updateRoom(next, roomId, (room) => ({ ...room, unread: 0 })) : next;
}

export function setDirect(state: ClientState, direct: Record<string, string[]>): ClientState {
  return { ...state, direct };
}

export function updateTimeline(state: ClientState, roomId: string, update: (timeline: Timeline) => Timeline): ClientState {
  return updateRoom(state, roomId, (room) => ({ ...room, timeline: update(room.timeline) }));
}

export function dismissNotice(state: ClientState): ClientState {
  return { ...state, notice: null };
}

/** `m.direct` with `roomId` added under `userId`. */
export function withDirectRoom(direct: Record<string, string[]>, userId: string, roomId: string): Record<string, string[]> {
  const rooms = direct[userId] ?? [];
  return rooms.includes(roomId) ? direct : { ...direct, [userId]: [...rooms, roomId] };
}

// --- Selectors -------------------------------------------------------------

export function isDirect(room: Room, state: ClientState): boolean {
  return room.directHint || Object.values(state.direct).some((rooms) => rooms.includes(room.roomId));
}

/** Joined (or invited) members other than us. */
export function otherMembers(room: Room, me: string): string[] {
  return Object.entries(room.members)
    .filter(([id, m]) => id !== me && (m.membership === 'join' || m.membership === 'invite'))
    .map(([id]) => id);
}

/** The direct chat's other person, from m.direct or the membership. */
export function directPartner(room: Room, state: ClientState): string | undefined {
  const listed = Object.entries(state.direct).find(([, rooms]) => rooms.includes(room.roomId));
  if (listed) return listed[0];
  return otherMembers(room, state.userId)[0] ?? room.inviter;
}

export function displayName(room: Room | undefined, userId: string): string {
  return room?.members[userId]?.displayName ?? userId;
}

export function roomName(room: Room, state: ClientState): string {
  if (room.name) return room.name;
  if (isDirect(room, state)) {
    const partner = directPartner(room, state);
    if (partner) return displayName(room, partner);
  }
  const others = otherMembers(room, state.userId).map((id) => displayName(room, id));
  if (others.length > 0) return others.slice(0, 3).join(', ') + (others.length > 3 ? ` and ${others.length - 3} more` : '');
  return room.inviter ? `Invite from ${room.inviter}` : 'Empty room';
}

export interface RoomSummary {
  room: Room;
  name: string;
  direct: boolean;
  lastMessage: MatrixEvent | undefined;
  lastActivity: number;
}

/** The room list: invites first, then by latest activity. */
export function roomSummaries(state: ClientState): RoomSummary[] {
  return Object.values(state.rooms)
    .map((room) => {
      const items = visibleItems(room.timeline);
      const lastMessage = [...items].reverse().find((item) => isMessage(item.event))?.event;
      const lastActivity = items.at(-1)?.event.origin_server_ts ?? 0;
      return { room, name: roomName(room, state), direct: isDirect(room, state), lastMessage, lastActivity };
    })
    .sort((a, b) => {
      if (a.room.membership !== b.room.membership) return a.room.membership === 'invite' ? -1 : 1;
      return b.lastActivity - a.lastActivity || a.name.localeCompare(b.name);
    });
}

/** Readers of each event (other than the sender and us), for "seen by". */
export function seenBy(room: Room, me: string): Map<string, string[]> {
  const byEvent = new Map<string, string[]>();
  for (const [userId, eventId] of Object.entries(room.receipts)) {
    if (userId === me) continue;
    byEvent.set(eventId, [...(byEvent.get(eventId) ?? []), userId]);
  }
  return byEvent;
}
