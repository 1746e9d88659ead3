import { describe, expect, it } from 'vitest';

import type { ServerFrame } from '../live/protocol';
import { iceServersFromTurn, parseCallFrame, parseIceServers } from './frames';
import {
  describeCallError,
  describeMediaError,
  initialCalls,
  participantsOf,
  reduceCalls,
  remoteTiles,
  type CallAction,
  type CallsState,
} from './state';

const ME = '@me:x';
const BOB = '@bob:y';
const CAROL = '@carol:z';
const ROOM = '!call:x';

function participants(userIds: string[], streams: Record<string, string> = {}, roomId = ROOM): ServerFrame {
  return { type: 'call.participants', room_id: roomId, user_ids: userIds, streams };
}

function frame(value: ServerFrame): CallAction {
  return { type: 'frame', frame: value };
}

function run(state: CallsState, ...actions: CallAction[]): CallsState {
  return actions.reduce(reduceCalls, state);
}

/** In the call of ROOM with camera and microphone, answered. */
function joined(): CallsState {
  return run(
    initialCalls(ME),
    { type: 'start', roomId: ROOM },
    { type: 'media', hasAudio: true, hasVideo: true },
    { type: 'joinSent' },
    frame({ type: 'call.answer', room_id: ROOM, sdp: 'v=0' }),
  );
}

describe('frames', () => {
  it('types the call frames and refuses malformed ones', () => {
    expect(parseCallFrame(participants([ME], { p1: ME }))).toEqual({ type: 'call.participants', room_id: ROOM, user_ids: [ME], streams: { p1: ME } });
    expect(parseCallFrame({ type: 'call.candidate', room_id: ROOM, candidate: 'candidate:1', sdp_mid: null, sdp_mline_index: 0 })).toEqual({
      type: 'call.candidate',
      room_id: ROOM,
      candidate: 'candidate:1',
      sdp_mid: null,
      sdp_mline_index: 0,
    });
    const bad: ServerFrame[] = [
      { type: 'call.participants', room_id: ROOM, user_ids: [ME], streams: { p1: 5 } },
      { type: 'call.participants', user_ids: [], streams: {} },
      { type: 'call.offer', room_id: ROOM },
      { type: 'call.config', room_id: ROOM, ice_servers: [{ username: 'u' }] },
      { type: 'call.candidate', room_id: ROOM, sdp_mline_index: 0 },
      { type: 'call.mystery', room_id: ROOM },
      { type: 'pong' },
    ];
    for (const value of bad) expect(parseCallFrame(value), JSON.stringify(value)).toBeNull();
  });

  it('reads ICE servers from call.config and from the TURN endpoint', () => {
    expect(parseIceServers([{ urls: ['stun:s:3478'] }, { urls: 'turn:t', username: 'u', credential: 'p' }])).toEqual([
      { urls: ['stun:s:3478'] },
      { urls: 'turn:t', username: 'u', credential: 'p' },
    ]);
    expect(parseIceServers('stun:s')).toBeNull();
    expect(iceServersFromTurn({ uris: ['turn:t:3478'], username: '1:@me:x', password: 'secret', ttl: 60 } as never)).toEqual([
      { urls: ['turn:t:3478'], username: '1:@me:x', credential: 'secret' },
    ]);
    expect(iceServersFromTurn({})).toEqual([]);
  });
});

describe("who is in a room's call", () => {
  it('follows call.participants for every room, before anyone here joins', () => {
    let state = run(initialCalls(ME), frame(participants([BOB], { p1: BOB })), frame(participants([CAROL], {}, '!other:x')));
    expect(participantsOf(state, ROOM)).toEqual([BOB]);
    expect(participantsOf(state, '!other:x')).toEqual([CAROL]);
    expect(state.active).toBeNull();

    state = reduceCalls(state, frame(participants([])));
    expect(participantsOf(state, ROOM)).toEqual([]);
    expect(state.rooms[ROOM]).toBeUndefined();
  });

  it('forgets everything when the socket reconnects (the server announces the calls afresh)', () => {
    const state = run(joined(), frame(participants([BOB, ME], { p1: BOB, p2: ME })), frame({ type: 'auth.success', user_id: ME, device_id: 'D', token: 't' }));
    expect(state.rooms).toEqual({});
    expect(state.active).toBeNull();
    expect(state.error?.message).toMatch(/interrupted/);
  });
});

describe('joining and leaving', () => {
  it('goes starting -> joining -> joined, and only on the answer for its own room', () => {
    let state = reduceCalls(initialCalls(ME), { type: 'start', roomId: ROOM });
    expect(state.active?.phase).toBe('starting');
    state = reduceCalls(state, { type: 'media', hasAudio: true, hasVideo: false });
    expect(state.active).toMatchObject({ micOn: true, cameraOn: false, hasVideo: false });
    state = reduceCalls(state, { type: 'joinSent' });
    expect(state.active?.phase).toBe('joining');
    state = reduceCalls(state, frame({ type: 'call.answer', room_id: '!elsewhere:x', sdp: 'v=0' }));
    expect(state.active?.phase).toBe('joining');
    state = reduceCalls(state, frame({ type: 'call.answer', room_id: ROOM, sdp: 'v=0' }));
    expect(state.active?.phase).toBe('joined');
    expect(reduceCalls(state, { type: 'start', roomId: '!second:x' })).toBe(state);
    state = reduceCalls(state, { type: 'left' });
    expect(state.active).toBeNull();
    expect(state.error).toBeNull();
  });

  it('ends the call with a readable reason when call.join is refused', () => {
    const joining = run(initialCalls(ME), { type: 'start', roomId: ROOM }, { type: 'joinSent' });
    const state = reduceCalls(joining, frame({ type: 'error', errcode: 'M_LIMIT_EXCEEDED', error: '', re: 'call.join' }));
    expect(state.active).toBeNull();
    expect(state.error).toEqual({ roomId: ROOM, message: 'Could not join the call: Too many attempts; please wait a moment' });
    // A later join clears the old error.
    expect(reduceCalls(state, { type: 'start', roomId: ROOM }).error).toBeNull();
  });

  it('keeps the call for a refused candidate, ends it when the server says we are not in it, ignores leave errors', () => {
    const refused = reduceCalls(joined(), frame({ type: 'error', errcode: 'M_BAD_JSON', error: 'bad candidate', re: 'call.candidate' }));
    expect(refused.active?.phase).toBe('joined');
    expect(refused.error?.message).toBe('The call could not use a network path: The request was not understood: bad candidate');

    const gone = reduceCalls(joined(), frame({ type: 'error', errcode: 'M_NOT_FOUND', error: 'not in this call', re: 'call.answer' }));
    expect(gone.active).toBeNull();
    expect(gone.error?.message).toBe('The call could not take in a change: Not found: not in this call');

    const idle = initialCalls(ME);
    expect(reduceCalls(idle, frame({ type: 'error', errcode: 'M_NOT_FOUND', error: '', re: 'call.leave' }))).toBe(idle);
    const chat = joined();
    expect(reduceCalls(chat, frame({ type: 'error', errcode: 'M_FORBIDDEN', error: '', re: 'txn1' }))).toBe(chat);
  });

  it('ends the call when the server stops listing us after it had', () => {
    // A stale announcement without us (queued before our join) changes nothing...
    let state = run(joined(), frame(participants([BOB], { p1: BOB })));
    expect(state.active?.listed).toBe(false);
    expect(state.active).not.toBeNull();
    // ...but once listed, being left out means the server dropped us.
    state = reduceCalls(state, frame(participants([BOB, ME], { p1: BOB, p2: ME })));
    expect(state.active?.listed).toBe(true);
    state = reduceCalls(state, frame(participants([BOB], { p1: BOB })));
    expect(state.active).toBeNull();
    expect(state.error?.message).toBe('You were disconnected from the call');
    expect(participantsOf(state, ROOM)).toEqual([BOB]);
  });

  it('ends the call when another device of ours joins it, but not for another room', () => {
    let state = reduceCalls(joined(), frame({ type: 'call.ended', room_id: '!other:x' }));
    expect(state.active).not.toBeNull();
    state = reduceCalls(state, frame({ type: 'call.ended', room_id: ROOM }));
    expect(state.active).toBeNull();
    expect(state.error?.message).toMatch(/another device/);
  });

  it('ends the call when the peer connection fails, and follows its other states', () => {
    const connected = reduceCalls(joined(), { type: 'connection', state: 'connected' });
    expect(connected.active?.connection).toBe('connected');
    const failed = reduceCalls(connected, { type: 'connection', state: 'failed' });
    expect(failed.active).toBeNull();
    expect(failed.error?.roomId).toBe(ROOM);
    expect(reduceCalls(failed, { type: 'dismissError' }).error).toBeNull();
  });
});

describe('streams and tiles', () => {
  it("maps each remote MediaStream to its owner through call.participants' streams", () => {
    let state = run(joined(), frame(participants([BOB, CAROL, ME], { pb: BOB, pc: CAROL, pm: ME })));
    // Before any track arrives, everyone else has a tile without a stream.
    expect(remoteTiles(state)).toEqual([
      { userId: BOB, streamId: null },
      { userId: CAROL, streamId: null },
    ]);
    state = run(state, { type: 'streamAdded', streamId: 'pc' }, { type: 'streamAdded', streamId: 'pc' });
    expect(state.active?.remoteStreams).toEqual(['pc']);
    expect(remoteTiles(state)).toEqual([
      { userId: BOB, streamId: null },
      { userId: CAROL, streamId: 'pc' },
    ]);
    state = reduceCalls(state, { type: 'streamAdded', streamId: 'pb' });
    expect(remoteTiles(state).map((tile) => tile.streamId)).toEqual(['pb', 'pc']);
  });

  it("drops a participant's tile when they leave, and follows a rejoin's new stream", () => {
    let state = run(
      joined(),
      frame(participants([BOB, ME], { pb: BOB, pm: ME })),
      { type: 'streamAdded', streamId: 'pb' },
      frame(participants([ME], { pm: ME })),
    );
    expect(remoteTiles(state)).toEqual([]);
    // Bob comes back on a new connection: his stream has a new id.
    state = run(state, frame(participants([BOB, ME], { pb2: BOB, pm: ME })));
    expect(remoteTiles(state)).toEqual([{ userId: BOB, streamId: null }]);
    state = run(state, { type: 'streamRemoved', streamId: 'pb' }, { type: 'streamAdded', streamId: 'pb2' });
    expect(remoteTiles(state)).toEqual([{ userId: BOB, streamId: 'pb2' }]);
  });

  it('shows no tiles out of a call, and a stream of nobody listed shows nowhere', () => {
    expect(remoteTiles(run(initialCalls(ME), frame(participants([BOB], { pb: BOB }))))).toEqual([]);
    const state = run(joined(), frame(participants([BOB, ME], { pb: BOB, pm: ME })), { type: 'streamAdded', streamId: 'stranger' });
    expect(remoteTiles(state)).toEqual([{ userId: BOB, streamId: null }]);
  });
});

describe('microphone and camera', () => {
  it('toggle only what there is', () => {
    let state = run(joined(), { type: 'toggleMic' });
    expect(state.active).toMatchObject({ micOn: false, cameraOn: true });
    state = run(state, { type: 'toggleMic' }, { type: 'toggleCamera' });
    expect(state.active).toMatchObject({ micOn: true, cameraOn: false });

    const audioOnly = run(initialCalls(ME), { type: 'start', roomId: ROOM }, { type: 'media', hasAudio: true, hasVideo: false });
    expect(reduceCalls(audioOnly, { type: 'toggleCamera' }).active?.cameraOn).toBe(false);
  });
});

describe('messages', () => {
  it('says why joining failed', () => {
    expect(describeCallError('call.join', 'M_FORBIDDEN', '')).toBe('Could not join the call: only members of the room may join its call');
    expect(describeCallError('call.join', 'M_FORBIDDEN', 'the call is full (16 participants)')).toBe(
      'Could not join the call: You are not allowed to do that: the call is full (16 participants)',
    );
    const denied = new DOMException('Permission denied', 'NotAllowedError');
    expect(describeMediaError(denied)).toBe('The browser was not allowed to use the camera and microphone');
    expect(describeMediaError(new DOMException('', 'NotFoundError'))).toBe('No camera or microphone was found');
    expect(describeMediaError(new Error('boom'))).toBe('boom');
  });
});
