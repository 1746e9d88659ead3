import { describe, expect, it } from 'vitest';

import type { ChatFrame } from '../live/protocol';
import {
  applyFrame,
  applyHistory,
  applySync,
  initialState,
  isDirect,
  openRoom,
  roomName,
  roomSummaries,
  seenBy,
  withDirectRoom,
  type ClientState,
  type SyncLike,
} from './rooms';

const ME = '@me:x';
const BOB = '@bob:y';
let ts = 1000;

function message(id: string, sender: string, body = id) {
  return { event_id: id, type: 'm.room.message', sender, origin_server_ts: ++ts, content: { msgtype: 'm.text', body } };
}

function member(userId: string, membership: string, sender = userId, extra: Record<string, unknown> = {}) {
  return {
    event_id: `$m-${userId}-${membership}-${++ts}`,
    type: 'm.room.member',
    sender,
    state_key: userId,
    origin_server_ts: ts,
    content: { membership, ...extra },
  };
}

function sync(partial: { join?: SyncLike['rooms']['join']; invite?: SyncLike['rooms']['invite']; leave?: Record<string, unknown>; direct?: Record<string, string[]>; next?: string }): SyncLike {
  return {
    next_batch: partial.next ?? 's1',
    rooms: { join: partial.join ?? {}, invite: partial.invite ?? {}, leave: partial.leave ?? {} },
    account_data: { events: partial.direct ? [{ type: 'm.direct', content: partial.direct }] : [] },
  };
}

function joined(events: unknown[], state: unknown[] = [], unread = 0, prevBatch = 'p0') {
  return {
    timeline: { events, prev_batch: prevBatch },
    state: { events: state },
    ephemeral: { events: [] },
    unread_notifications: { notification_count: unread },
  };
}

function newMessage(roomId: string, event: unknown, token: string): ChatFrame {
  return { type: 'message.new', room_id: roomId, event, token };
}

function withDm(): ClientState {
  return applySync(
    initialState(ME),
    sync({
      join: { '!dm:x': joined([member(ME, 'join'), member(BOB, 'join'), message('$1', BOB, 'hello')], [], 1) },
      direct: { [BOB]: ['!dm:x'] },
    }),
  );
}

describe('the first sync', () => {
  it('reads rooms, members, direct chats, unread counts and the resume token', () => {
    const state = withDm();
    const room = state.rooms['!dm:x'];
    expect(room?.membership).toBe('join');
    expect(room?.unread).toBe(1);
    expect(room?.timeline.prevBatch).toBe('p0');
    expect(state.resumeToken).toBe('s1');
    expect(room && isDirect(room, state)).toBe(true);
    expect(room && roomName(room, state)).toBe(BOB);
  });

  it('reads invites with their inviter and direct flag', () => {
    const state = applySync(
      initialState(ME),
      sync({ invite: { '!i:y': { invite_state: { events: [{ type: 'm.room.member', sender: BOB, state_key: ME, content: { membership: 'invite', is_direct: true } }] } } } }),
    );
    const room = state.rooms['!i:y'];
    expect(room?.membership).toBe('invite');
    expect(room?.inviter).toBe(BOB);
    expect(room?.directHint).toBe(true);
  });

  it('ignores malformed events instead of failing', () => {
    const state = applySync(initialState(ME), sync({ join: { '!r:x': joined([null, 42, { type: 'x' }, message('$ok', BOB)]) } }));
    expect(state.rooms['!r:x']?.timeline.items.map((i) => i.event.event_id)).toEqual(['$ok']);
  });
});

describe('live frames', () => {
  it('moves the resume token with every message.new, and to the token auth.success confirms', () => {
    let state = withDm();
    state = applyFrame(state, newMessage('!dm:x', message('$2', BOB), 'tok-2'));
    expect(state.resumeToken).toBe('tok-2');
    state = applyFrame(state, newMessage('!dm:x', { nonsense: true }, 'tok-3'));
    expect(state.resumeToken).toBe('tok-3');
    state = applyFrame(state, { type: 'auth.success', user_id: ME, device_id: 'D', token: 'tok-3' });
    expect(state.resumeToken).toBe('tok-3');
  });

  it('counts unread messages from others in rooms that are not open', () => {
    let state = withDm();
    state = applyFrame(state, newMessage('!dm:x', message('$2', BOB), 't2'));
    state = applyFrame(state, newMessage('!dm:x', message('$3', BOB), 't3'));
    expect(state.rooms['!dm:x']?.unread).toBe(3);
    state = openRoom(state, '!dm:x');
    expect(state.rooms['!dm:x']?.unread).toBe(0);
    state = applyFrame(state, newMessage('!dm:x', message('$4', BOB), 't4'));
    expect(state.rooms['!dm:x']?.unread).toBe(0);
  });

  it('clears unread when we write, and when our receipt (another device) arrives', () => {
    let state = withDm();
    state = applyFrame(state, newMessage('!dm:x', message('$2', ME), 't2'));
    expect(state.rooms['!dm:x']?.unread).toBe(0);
    state = applyFrame(state, newMessage('!dm:x', message('$3', BOB), 't3'));
    state = applyFrame(state, newMessage('!dm:x', message('$4', BOB), 't4'));
    expect(state.rooms['!dm:x']?.unread).toBe(2);
    state = applyFrame(state, { type: 'receipt', room_id: '!dm:x', content: { $3: { 'm.read': { [ME]: { ts: 1 } } } } });
    expect(state.rooms['!dm:x']?.unread).toBe(1);
  });

  it('does not count state changes or repeats as unread', () => {
    let state = withDm();
    state = applyFrame(state, newMessage('!dm:x', member(BOB, 'join', BOB, { displayname: 'Bob' }), 't2'));
    state = applyFrame(state, newMessage('!dm:x', message('$1', BOB, 'hello'), 't3'));
    expect(state.rooms['!dm:x']?.unread).toBe(1);
    expect(state.rooms['!dm:x']?.members[BOB]?.displayName).toBe('Bob');
  });

  it('records read receipts per reader', () => {
    let state = withDm();
    state = applyFrame(state, { type: 'receipt', room_id: '!dm:x', content: { $1: { 'm.read': { [BOB]: { ts: 1 } } } } });
    const room = state.rooms['!dm:x'];
    expect(room && seenBy(room, ME).get('$1')).toEqual([BOB]);
  });

  it('shows who is typing, never ourselves', () => {
    let state = withDm();
    state = applyFrame(state, { type: 'typing', room_id: '!dm:x', user_ids: [BOB, ME] });
    expect(state.rooms['!dm:x']?.typing).toEqual([BOB]);
    state = applyFrame(state, { type: 'typing', room_id: '!dm:x', user_ids: [] });
    expect(state.rooms['!dm:x']?.typing).toEqual([]);
  });

  it('turns an invite into a joined room when our join arrives, keeping the direct flag', () => {
    let state = applyFrame(initialState(ME), {
      type: 'invite',
      room_id: '!new:y',
      invite_state: [{ type: 'm.room.member', sender: BOB, state_key: ME, content: { membership: 'invite', is_direct: true } }],
    });
    expect(roomSummaries(state)[0]?.room.membership).toBe('invite');
    state = applyFrame(state, newMessage('!new:y', member(ME, 'join'), 't1'));
    const room = state.rooms['!new:y'];
    expect(room?.membership).toBe('join');
    expect(room?.directHint).toBe(true);
    expect(room?.stateLoaded).toBe(false);
    expect(room?.timeline.prevBatch).toBe('');
  });

  it('adds a room we created from its first event', () => {
    const create = { event_id: '$c', type: 'm.room.create', sender: ME, state_key: '', origin_server_ts: 1, content: {} };
    let state = applyFrame(initialState(ME), newMessage('!g:x', create, 't1'));
    state = applyFrame(state, newMessage('!g:x', { event_id: '$n', type: 'm.room.name', sender: ME, state_key: '', origin_server_ts: 2, content: { name: 'Tea lovers' } }, 't2'));
    const room = state.rooms['!g:x'];
    expect(room && roomName(room, state)).toBe('Tea lovers');
  });

  it('drops a room we were removed from and says so', () => {
    let state = applySync(initialState(ME), sync({ join: { '!g:x': joined([member(ME, 'join'), { event_id: '$n', type: 'm.room.name', sender: BOB, state_key: '', origin_server_ts: 2, content: { name: 'Group' } }]) } }));
    state = openRoom(state, '!g:x');
    state = applyFrame(state, newMessage('!g:x', member(ME, 'leave', BOB), 't9'));
    expect(state.rooms['!g:x']).toBeUndefined();
    expect(state.openRoomId).toBeNull();
    expect(state.notice).toBe('You were removed from Group');
    expect(state.resumeToken).toBe('t9');
  });

  it('drops a room we left ourselves without a notice', () => {
    let state = withDm();
    state = applyFrame(state, newMessage('!dm:x', member(ME, 'leave'), 't9'));
    expect(state.rooms['!dm:x']).toBeUndefined();
    expect(state.notice).toBeNull();
  });
});

describe('history and the room list', () => {
  it('prepends /messages pages and stops at the end', () => {
    let state = withDm();
    state = applyHistory(state, '!dm:x', [message('$0b', BOB), message('$0a', BOB)], null);
    const room = state.rooms['!dm:x'];
    expect(room?.timeline.items.map((i) => i.event.event_id).slice(0, 2)).toEqual(['$0a', '$0b']);
    expect(room?.timeline.prevBatch).toBeNull();
  });

  it('lists invites first, then rooms by latest activity, with their last message', () => {
    let state = withDm();
    state = applySync(state, sync({ join: { '!g:x': joined([member(ME, 'join'), message('$g', ME, 'newer')]) } }));
    state = applyFrame(state, { type: 'invite', room_id: '!i:z', invite_state: [] });
    const list = roomSummaries(state);
    expect(list.map((s) => s.room.roomId)).toEqual(['!i:z', '!g:x', '!dm:x']);
    expect(list[1]?.lastMessage?.content.body).toBe('newer');
    expect(list[1]?.direct).toBe(false);
  });

  it('adds direct rooms to m.direct once', () => {
    const once = withDirectRoom({}, BOB, '!a:x');
    expect(withDirectRoom(once, BOB, '!a:x')).toBe(once);
    expect(withDirectRoom(once, BOB, '!b:x')).toEqual({ [BOB]: ['!a:x', '!b:x'] });
  });
});
