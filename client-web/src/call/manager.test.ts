// The call client's signalling, against a fake socket, fake media and a fake
// peer connection that records what was done to it.

import { describe, expect, it } from 'vitest';

import type { ClientFrame, ServerFrame } from '../live/protocol';
import { CallManager, type CallEnvironment } from './manager';

const ME = '@me:x';
const BOB = '@bob:y';
const ROOM = '!call:x';

class FakeTrack {
  enabled = true;
  stopped = false;
  constructor(readonly kind: 'audio' | 'video') {}
  stop() {
    this.stopped = true;
  }
}

class FakeStream {
  private readonly listeners: (() => void)[] = [];
  constructor(
    readonly id: string,
    private tracks: FakeTrack[],
  ) {}
  getTracks() {
    return this.tracks;
  }
  getAudioTracks() {
    return this.tracks.filter((t) => t.kind === 'audio');
  }
  getVideoTracks() {
    return this.tracks.filter((t) => t.kind === 'video');
  }
  addEventListener(_type: 'removetrack', listener: () => void) {
    this.listeners.push(listener);
  }
  /** What the browser does when the server's offer withdraws the tracks. */
  removeAll() {
    this.tracks = [];
    for (const listener of this.listeners) listener();
  }
}

class FakePeer {
  log: string[] = [];
  localDescription: RTCSessionDescriptionInit | null = null;
  remoteDescription: RTCSessionDescriptionInit | null = null;
  connectionState: RTCPeerConnectionState = 'new';
  onicecandidate: ((event: { candidate: Partial<RTCIceCandidate> | null }) => void) | null = null;
  ontrack: ((event: { streams: FakeStream[] }) => void) | null = null;
  onconnectionstatechange: (() => void) | null = null;
  closed = false;
  constructor(readonly config: RTCConfiguration) {}
  addTrack(track: FakeTrack) {
    this.log.push(`addTrack ${track.kind}`);
  }
  createOffer() {
    return Promise.resolve({ type: 'offer' as const, sdp: 'client-offer' });
  }
  createAnswer() {
    return Promise.resolve({ type: 'answer' as const, sdp: `answer-to-${this.remoteDescription?.sdp ?? ''}` });
  }
  async setLocalDescription(description: RTCSessionDescriptionInit) {
    await Promise.resolve();
    this.localDescription = description;
    this.log.push(`local ${description.type}`);
    // Gathering starts with the first local description, before the offer is sent.
    if (description.type === 'offer') this.gather('candidate:early');
  }
  async setRemoteDescription(description: RTCSessionDescriptionInit) {
    await Promise.resolve();
    this.remoteDescription = description;
    this.log.push(`remote ${description.type} ${description.sdp ?? ''}`);
  }
  addIceCandidate(candidate: RTCIceCandidateInit) {
    if (!this.remoteDescription) return Promise.reject(new Error('no remote description'));
    this.log.push(`candidate ${candidate.candidate ?? ''}`);
    return Promise.resolve();
  }
  close() {
    this.closed = true;
  }
  /** The connection changed state. */
  connect(state: RTCPeerConnectionState) {
    this.connectionState = state;
    this.onconnectionstatechange?.();
  }
  /** The browser gathered a candidate. */
  gather(candidate: string) {
    this.onicecandidate?.({ candidate: { candidate, sdpMid: '0', sdpMLineIndex: 0 } });
  }
}

function setup(options: { media?: () => Promise<FakeStream>; live?: boolean; refuseSends?: boolean } = {}) {
  const sent: ClientFrame[] = [];
  const peers: FakePeer[] = [];
  const streams: FakeStream[] = [];
  let listener: ((frame: ServerFrame) => void) | null = null;
  const env: CallEnvironment = {
    live: {
      get live() {
        return options.live !== false;
      },
      send: (frame) => {
        if (options.live === false || options.refuseSends) return false;
        sent.push(frame);
        return true;
      },
      subscribe: (next) => {
        listener = next;
        return () => {
          listener = null;
        };
      },
    },
    turnServers: () => Promise.resolve([{ urls: ['turn:t'], username: 'u', credential: 'p' }]),
    getUserMedia: async () => {
      const stream = options.media ? await options.media() : new FakeStream('local', [new FakeTrack('audio'), new FakeTrack('video')]);
      streams.push(stream);
      return stream as unknown as MediaStream;
    },
    createPeer: (config) => {
      const peer = new FakePeer(config);
      peers.push(peer);
      return peer as unknown as RTCPeerConnection;
    },
  };
  const calls = new CallManager(ME, env);
  calls.start();
  const receive = async (frame: ServerFrame) => {
    listener?.(frame);
    await settle();
  };
  return { calls, sent, peers, streams, receive, peer: () => peers[0] as FakePeer };
}

/** Lets queued promise work finish. */
async function settle() {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

describe('the call client', () => {
  it('offers its tracks with call.join, sending candidates only after it, and applies the answer', async () => {
    const { calls, sent, peer, receive } = setup();
    await calls.join(ROOM);
    expect(peer().config.iceServers).toEqual([{ urls: ['turn:t'], username: 'u', credential: 'p' }]);
    expect(peer().log.slice(0, 3)).toEqual(['addTrack audio', 'addTrack video', 'local offer']);
    expect(sent.map((f) => f.type)).toEqual(['call.join', 'call.candidate']);
    expect(sent[0]).toEqual({ type: 'call.join', room_id: ROOM, sdp: 'client-offer' });
    expect(sent[1]).toMatchObject({ candidate: 'candidate:early' });
    peer().gather('candidate:late');
    expect(sent[2]).toMatchObject({ type: 'call.candidate', room_id: ROOM, candidate: 'candidate:late', sdp_mline_index: 0 });
    expect(calls.getSnapshot().state.active?.phase).toBe('joining');

    // A candidate before the answer waits for it.
    await receive({ type: 'call.candidate', room_id: ROOM, candidate: 'candidate:server', sdp_mid: null, sdp_mline_index: 0 });
    await receive({ type: 'call.config', room_id: ROOM, ice_servers: [{ urls: 'stun:s' }] });
    await receive({ type: 'call.answer', room_id: ROOM, sdp: 'server-answer' });
    expect(peer().log.slice(3)).toEqual(['remote answer server-answer', 'candidate candidate:server']);
    expect(calls.getSnapshot().state.active?.phase).toBe('joined');
  });

  it("answers every server offer once connected, and shows others' streams until the server withdraws them", async () => {
    const { calls, sent, peer, receive } = setup();
    await calls.join(ROOM);
    await receive({ type: 'call.answer', room_id: ROOM, sdp: 'server-answer' });
    // The server's first offer comes before the connection is up: answered locally, sent once connected.
    await receive({ type: 'call.offer', room_id: ROOM, sdp: 'offer-2' });
    expect(peer().localDescription).toEqual({ type: 'answer', sdp: 'answer-to-offer-2' });
    expect(sent.filter((f) => f.type === 'call.answer')).toEqual([]);
    peer().connect('connecting');
    expect(sent.filter((f) => f.type === 'call.answer')).toEqual([]);
    peer().connect('connected');
    expect(sent.at(-1)).toEqual({ type: 'call.answer', room_id: ROOM, sdp: 'answer-to-offer-2' });
    expect(calls.getSnapshot().state.active?.connection).toBe('connected');
    await receive({ type: 'call.offer', room_id: ROOM, sdp: 'offer-3' });
    expect(sent.at(-1)).toEqual({ type: 'call.answer', room_id: ROOM, sdp: 'answer-to-offer-3' });
    await receive({ type: 'call.offer', room_id: '!other:x', sdp: 'not-ours' });
    expect(sent.at(-1)).toEqual({ type: 'call.answer', room_id: ROOM, sdp: 'answer-to-offer-3' });

    const bobStream = new FakeStream('pb', [new FakeTrack('audio'), new FakeTrack('video')]);
    await receive({ type: 'call.participants', room_id: ROOM, user_ids: [BOB, ME], streams: { pb: BOB, pm: ME } });
    peer().ontrack?.({ streams: [bobStream] });
    let view = calls.getSnapshot();
    expect(view.state.active?.remoteStreams).toEqual(['pb']);
    expect(view.remote.get('pb')).toBe(bobStream);

    bobStream.removeAll();
    view = calls.getSnapshot();
    expect(view.state.active?.remoteStreams).toEqual([]);
    expect(view.remote.size).toBe(0);
  });

  it('leaving tells the server, closes the connection and stops the camera', async () => {
    const { calls, sent, peer, streams, receive } = setup();
    await calls.join(ROOM);
    await receive({ type: 'call.answer', room_id: ROOM, sdp: 'server-answer' });
    calls.toggleMic();
    expect(streams[0]?.getAudioTracks()[0]?.enabled).toBe(false);
    calls.leave('!not-this-one:x');
    expect(calls.getSnapshot().state.active).not.toBeNull();
    calls.leave(ROOM);
    expect(sent.at(-1)).toEqual({ type: 'call.leave', room_id: ROOM });
    expect(peer().closed).toBe(true);
    expect(streams[0]?.getTracks().every((t) => t.stopped)).toBe(true);
    expect(calls.getSnapshot()).toMatchObject({ local: null, state: { active: null, error: null } });
  });

  it('a leave while the camera opens stops it and never joins', async () => {
    let open: (stream: FakeStream) => void = () => undefined;
    const { calls, sent, peers, streams } = setup({ media: () => new Promise((resolve) => { open = resolve; }) });
    const joining = calls.join(ROOM);
    calls.leave(ROOM);
    open(new FakeStream('local', [new FakeTrack('video')]));
    await joining;
    expect(sent).toEqual([]);
    expect(peers).toEqual([]);
    expect(streams[0]?.getTracks()[0]?.stopped).toBe(true);
  });

  it('says why when the camera is refused or the socket is down, and tears down when the server drops us', async () => {
    const refused = setup({ media: () => Promise.reject(new DOMException('denied', 'NotAllowedError')) });
    await refused.calls.join(ROOM);
    expect(refused.calls.getSnapshot().state.error).toEqual({
      roomId: ROOM,
      message: 'Could not join the call: The browser was not allowed to use the camera and microphone',
    });

    const offline = setup({ live: false });
    await offline.calls.join(ROOM);
    expect(offline.calls.getSnapshot().state.error?.message).toMatch(/Not connected to the server/);
    expect(offline.streams).toEqual([]);
    expect(offline.peers).toEqual([]);

    // The socket dropped while the camera opened: nothing is left running.
    const dropped = setup({ refuseSends: true });
    await dropped.calls.join(ROOM);
    expect(dropped.calls.getSnapshot().state.error?.message).toMatch(/Not connected to the server/);
    expect(dropped.peer().closed).toBe(true);
    expect(dropped.streams[0]?.getTracks().every((t) => t.stopped)).toBe(true);

    const removed = setup();
    await removed.calls.join(ROOM);
    await removed.receive({ type: 'call.answer', room_id: ROOM, sdp: 'server-answer' });
    await removed.receive({ type: 'call.participants', room_id: ROOM, user_ids: [ME], streams: { pm: ME } });
    await removed.receive({ type: 'call.participants', room_id: ROOM, user_ids: [], streams: {} });
    expect(removed.peer().closed).toBe(true);
    expect(removed.streams[0]?.getTracks().every((t) => t.stopped)).toBe(true);
    expect(removed.calls.getSnapshot().state.error?.message).toBe('You were disconnected from the call');
  });
});
