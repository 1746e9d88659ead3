// The call client: one peer connection to the server's SFU for the call this
// client is in, signalled over the live socket (docs/websocket.md, "Calls").
// It owns the browser objects (camera and microphone, RTCPeerConnection,
// remote MediaStreams); what they mean is decided by the pure `state.ts`.

import { call, type Api } from '../api/client';
import type { ClientFrame, ServerFrame } from '../live/protocol';
import type { LiveSocket } from '../live/socket';
import { iceServersFromTurn, parseCallFrame } from './frames';
import { describeMediaError, initialCalls, reduceCalls, type CallAction, type CallsState } from './state';

/** What the call client needs from the browser and the server. */
export interface CallEnvironment {
  live: Pick<LiveSocket, 'send' | 'subscribe' | 'live'>;
  /** ICE servers from `GET /voip/turnServer`; none when the server offers none. */
  turnServers: () => Promise<RTCIceServer[]>;
  getUserMedia: (constraints: MediaStreamConstraints) => Promise<MediaStream>;
  createPeer: (config: RTCConfiguration) => RTCPeerConnection;
}

/** The browser's camera, microphone and WebRTC, and the server behind `api` and `live`. */
export function browserEnvironment(live: CallEnvironment['live'], api: Api): CallEnvironment {
  return {
    live,
    turnServers: async () => iceServersFromTurn(await call(api.GET('/_matrix/client/v3/voip/turnServer'))),
    getUserMedia: (constraints) => {
      // Absent outside secure contexts (plain http to anything but localhost).
      if (typeof navigator.mediaDevices === 'undefined') {
        return Promise.reject(new Error('calls need a secure (https) connection to the server'));
      }
      return navigator.mediaDevices.getUserMedia(constraints);
    },
    createPeer: (config) => new RTCPeerConnection(config),
  };
}

/** What the call screen shows: the state, and the streams to play. */
export interface CallView {
  state: CallsState;
  local: MediaStream | null;
  /** Remote MediaStreams by id (see `remoteTiles` for whose each is). */
  remote: ReadonlyMap<string, MediaStream>;
}

const VIDEO: MediaTrackConstraints = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 24 } };

const OFFLINE = 'Not connected to the server; try again in a moment';

function stopTracks(stream: MediaStream | null): void {
  for (const track of stream?.getTracks() ?? []) track.stop();
}

/** The reason a join failed, as the person should read it. */
function joinFailure(error: unknown): string {
  return `Could not join the call: ${describeMediaError(error)}`;
}

export class CallManager {
  private view: CallView;
  private readonly listeners = new Set<() => void>();
  private unsubscribe: (() => void) | null = null;
  private peer: RTCPeerConnection | null = null;
  private local: MediaStream | null = null;
  private readonly remote = new Map<string, MediaStream>();
  /** Peer connection operations, one after the other, in the order the frames came. */
  private chain: Promise<void> = Promise.resolve();
  /** Bumped when a call ends, so work still under way for it stops. */
  private generation = 0;
  /** Our candidates gathered before `call.join` went out. */
  private localCandidates: ClientFrame[] | null = null;
  /** The server's candidates that came before its answer. */
  private remoteCandidates: RTCIceCandidateInit[] = [];
  /** The last `call.config` ICE servers, used for the next join. */
  private configured: RTCIceServer[] | null = null;
  /** Answers to the server's offers, held until the connection is up. */
  private heldAnswers: (() => void)[] = [];

  constructor(
    me: string,
    private readonly env: CallEnvironment,
  ) {
    this.view = { state: initialCalls(me), local: null, remote: new Map() };
  }

  // --- Store plumbing (for useSyncExternalStore) ---------------------------

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): CallView => this.view;

  /** Starts following the socket's call frames. */
  start(): void {
    this.unsubscribe ??= this.env.live.subscribe((frame) => {
      this.onFrame(frame);
    });
  }

  /** Leaves any call and stops following the socket. */
  stop(): void {
    const active = this.view.state.active;
    if (active) this.leave(active.roomId);
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  private publish(state: CallsState): void {
    this.view = { state, local: state.active ? this.local : null, remote: new Map(this.remote) };
    for (const listener of this.listeners) listener();
  }

  private dispatch(action: CallAction): void {
    const before = this.view.state;
    const state = reduceCalls(before, action);
    if (state === before) return;
    if (before.active && !state.active) this.teardown();
    this.publish(state);
  }

  /** Releases everything of the call that just ended. */
  private teardown(): void {
    this.generation += 1;
    if (this.peer) {
      this.peer.onicecandidate = null;
      this.peer.ontrack = null;
      this.peer.onconnectionstatechange = null;
      this.peer.close();
    }
    this.peer = null;
    stopTracks(this.local);
    this.local = null;
    this.remote.clear();
    this.localCandidates = null;
    this.remoteCandidates = [];
    this.heldAnswers = [];
    this.chain = Promise.resolve();
  }

  // --- Actions ---------------------------------------------------------------

  /** Joins the room's call (leaving any other first): camera, microphone, offer, `call.join`. */
  async join(roomId: string): Promise<void> {
    const current = this.view.state.active;
    if (current?.roomId === roomId) return;
    if (current) this.leave(current.roomId);
    this.dispatch({ type: 'start', roomId });
    const generation = this.generation;
    const stale = () => generation !== this.generation;
    try {
      // Checked again when `call.join` goes out; this spares opening the camera for nothing.
      if (!this.env.live.live) throw new Error(OFFLINE);
      const [stream, iceServers] = await Promise.all([this.openMedia(), this.iceServers()]);
      if (stale()) {
        stopTracks(stream);
        return;
      }
      this.local = stream;
      this.dispatch({ type: 'media', hasAudio: stream.getAudioTracks().length > 0, hasVideo: stream.getVideoTracks().length > 0 });
      const peer = this.env.createPeer({ iceServers, bundlePolicy: 'max-bundle' });
      this.peer = peer;
      this.localCandidates = [];
      peer.onicecandidate = ({ candidate }) => {
        if (!candidate?.candidate) return;
        const frame: ClientFrame = {
          type: 'call.candidate',
          room_id: roomId,
          candidate: candidate.candidate,
          sdp_mid: candidate.sdpMid,
          sdp_mline_index: candidate.sdpMLineIndex,
        };
        if (this.localCandidates) this.localCandidates.push(frame);
        else this.env.live.send(frame);
      };
      peer.ontrack = ({ streams }) => {
        for (const remote of streams) this.addRemote(remote);
      };
      peer.onconnectionstatechange = () => {
        this.dispatch({ type: 'connection', state: peer.connectionState });
        if (peer.connectionState === 'connected') {
          const held = this.heldAnswers;
          this.heldAnswers = [];
          for (const send of held) send();
        }
      };
      for (const track of stream.getTracks()) peer.addTrack(track, stream);
      await peer.setLocalDescription(await peer.createOffer());
      if (stale()) return;
      const sdp = peer.localDescription?.sdp ?? '';
      if (!this.env.live.send({ type: 'call.join', room_id: roomId, sdp })) {
        throw new Error(OFFLINE);
      }
      this.dispatch({ type: 'joinSent' });
      const queued = this.localCandidates;
      this.localCandidates = null;
      for (const frame of queued) this.env.live.send(frame);
    } catch (error) {
      if (!stale()) this.dispatch({ type: 'failed', message: joinFailure(error) });
    }
  }

  /** Leaves the room's call, if this client is in it. */
  leave(roomId: string): void {
    const active = this.view.state.active;
    if (active?.roomId !== roomId) return;
    if (active.phase !== 'starting') this.env.live.send({ type: 'call.leave', room_id: roomId });
    this.dispatch({ type: 'left' });
  }

  toggleMic(): void {
    this.dispatch({ type: 'toggleMic' });
    this.applySwitches();
  }

  toggleCamera(): void {
    this.dispatch({ type: 'toggleCamera' });
    this.applySwitches();
  }

  dismissError(): void {
    this.dispatch({ type: 'dismissError' });
  }

  /** Muting disables the track: the connection stays, the server forwards silence or black. */
  private applySwitches(): void {
    const active = this.view.state.active;
    if (!active || !this.local) return;
    for (const track of this.local.getAudioTracks()) track.enabled = active.micOn;
    for (const track of this.local.getVideoTracks()) track.enabled = active.cameraOn;
  }

  /** Camera and microphone; the microphone alone when there is no camera. */
  private async openMedia(): Promise<MediaStream> {
    try {
      return await this.env.getUserMedia({ audio: true, video: VIDEO });
    } catch (error) {
      const name = error instanceof Error ? error.name : '';
      if (name !== 'NotFoundError' && name !== 'OverconstrainedError') throw error;
      return await this.env.getUserMedia({ audio: true }).catch(() => {
        throw error;
      });
    }
  }

  private async iceServers(): Promise<RTCIceServer[]> {
    if (this.configured) return this.configured;
    // Without TURN (or against a server without the endpoint) the SFU's
    // host candidates still work wherever the server is reachable over UDP.
    return this.env.turnServers().catch(() => []);
  }

  private addRemote(stream: MediaStream): void {
    if (!this.remote.has(stream.id)) {
      this.remote.set(stream.id, stream);
      const generation = this.generation;
      // The server withdraws a departed participant's tracks in its next offer.
      stream.addEventListener('removetrack', () => {
        if (generation !== this.generation || stream.getTracks().length > 0) return;
        this.remote.delete(stream.id);
        this.dispatch({ type: 'streamRemoved', streamId: stream.id });
      });
    }
    this.dispatch({ type: 'streamAdded', streamId: stream.id });
  }

  // --- Frames from the server -------------------------------------------------

  private onFrame(frame: ServerFrame): void {
    const phase = this.view.state.active?.phase;
    this.dispatch({ type: 'frame', frame });
    const call = parseCallFrame(frame);
    const active = this.view.state.active;
    if (!call || !active || call.room_id !== active.roomId) return;
    switch (call.type) {
      case 'call.config':
        this.configured = call.ice_servers;
        return;
      case 'call.answer':
        if (phase !== 'joining') return;
        this.enqueue(async (peer) => {
          await peer.setRemoteDescription({ type: 'answer', sdp: call.sdp });
          const early = this.remoteCandidates;
          this.remoteCandidates = [];
          for (const candidate of early) await this.addCandidate(peer, candidate);
        });
        return;
      case 'call.offer': {
        const roomId = active.roomId;
        this.enqueue(async (peer) => {
          await peer.setRemoteDescription({ type: 'offer', sdp: call.sdp });
          await peer.setLocalDescription(await peer.createAnswer());
          const sdp = peer.localDescription?.sdp ?? '';
          const send = () => {
            this.env.live.send({ type: 'call.answer', room_id: roomId, sdp });
          };
          // The server starts forwarding a track, and asks its publisher for
          // a key frame, when it gets the answer; before our connection is up
          // that key frame is lost and the video stays black until our
          // browser's own key-frame request gets through. So the first answer
          // waits for the connection (the server sends no new offer meanwhile).
          if (peer.connectionState === 'connected') send();
          else this.heldAnswers.push(send);
        });
        return;
      }
      case 'call.candidate': {
        const candidate = { candidate: call.candidate, sdpMid: call.sdp_mid, sdpMLineIndex: call.sdp_mline_index };
        this.enqueue(async (peer) => {
          if (peer.remoteDescription) await this.addCandidate(peer, candidate);
          else this.remoteCandidates.push(candidate);
        });
        return;
      }
      case 'call.participants':
      case 'call.ended':
        return;
    }
  }

  /** One candidate the browser cannot use is no reason to end the call. */
  private async addCandidate(peer: RTCPeerConnection, candidate: RTCIceCandidateInit): Promise<void> {
    await peer.addIceCandidate(candidate).catch(() => undefined);
  }

  /** Runs `operation` on the peer connection after the ones before it. */
  private enqueue(operation: (peer: RTCPeerConnection) => Promise<void>): void {
    const peer = this.peer;
    if (!peer) return;
    const generation = this.generation;
    this.chain = this.chain
      .then(() => (generation === this.generation ? operation(peer) : undefined))
      .catch((error: unknown) => {
        if (generation === this.generation) this.dispatch({ type: 'failed', message: `The call connection failed: ${describeMediaError(error)}` });
      });
  }
}
