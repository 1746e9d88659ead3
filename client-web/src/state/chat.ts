// The chat client: owns the state, talks to the server (typed REST client and
// the live socket) and turns answers into state changes. The state logic
// itself lives in the pure modules beside this one (rooms.ts, timeline.ts).

import { call, createApi, describeError, MatrixError, type Api } from '../api/client';
import { fetchMedia, uploadFile, type UploadContext } from '../api/media';
import type { ChatFrame, ServerFrame } from '../live/protocol';
import { LiveSocket, type ConnectionStatus } from '../live/socket';
import type { MatrixEvent } from './events';
import {
  applyFrame,
  applyHistory,
  applyRoomState,
  applySync,
  dismissNotice,
  initialState,
  openRoom,
  setDirect,
  updateTimeline,
  withDirectRoom,
  type ClientState,
} from './rooms';
import {
  addLocalEcho,
  discardEcho,
  localEventId,
  markFailed,
  markRetrying,
  markSent,
  setEcho,
  type Timeline,
} from './timeline';
import type { Session } from './session';

/** Events per page of history, and in each room of the first sync. */
const PAGE = 30;
/** How long a WebSocket send may go unanswered before it counts as failed. */
const SEND_TIMEOUT_MS = 15_000;
/** Typing notices last this long unless renewed. */
const TYPING_TIMEOUT_MS = 6_000;

export interface ViewState {
  chat: ClientState;
  connection: ConnectionStatus;
  /** The first sync is done. */
  ready: boolean;
  /** Rooms whose older history is being read. */
  loadingHistory: ReadonlySet<string>;
}

interface Outgoing {
  roomId: string;
  content: Record<string, unknown>;
  /** The file still to upload, for attachments. */
  file?: File;
  timer?: ReturnType<typeof setTimeout>;
}

export class ChatClient {
  readonly api: Api;
  private view: ViewState;
  private readonly listeners = new Set<() => void>();
  private readonly socket: LiveSocket;
  private readonly outgoing = new Map<string, Outgoing>();
  private readonly upload: UploadContext;
  private readonly typingSent = new Map<string, number>();
  private readonly lastReceipt = new Map<string, string>();
  private readonly mediaCache = new Map<string, Promise<string>>();
  private txnCounter = 0;
  /** Counts starts and stops, so an answer for a stopped run is dropped. */
  private runs = 0;

  constructor(
    readonly session: Session,
    private readonly onSignedOut: (reason: string) => void,
  ) {
    this.api = createApi(session.baseUrl, session.accessToken);
    this.upload = { api: this.api, baseUrl: session.baseUrl, token: session.accessToken, directUploads: undefined };
    this.view = { chat: initialState(session.userId), connection: 'connecting', ready: false, loadingHistory: new Set() };
    this.socket = new LiveSocket({
      baseUrl: session.baseUrl,
      token: session.accessToken,
      since: () => this.view.chat.resumeToken,
      onStatus: (connection) => {
        this.setView({ ...this.view, connection });
      },
      onAuthFailed: (_code, message) => {
        this.onSignedOut(message || 'Your session has ended; please sign in again');
      },
    });
    this.socket.subscribe((frame) => {
      this.onFrame(frame);
    });
  }

  // --- Store plumbing (for useSyncExternalStore) ---------------------------

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): ViewState => this.view;

  private setView(view: ViewState): void {
    this.view = view;
    for (const listener of this.listeners) listener();
  }

  private update(change: (state: ClientState) => ClientState): void {
    this.setView({ ...this.view, chat: change(this.view.chat) });
  }

  /** The socket, for features that add their own frames (calls). */
  get live(): LiveSocket {
    return this.socket;
  }

  // --- Lifecycle -------------------------------------------------------------

  /** Reads the rooms with one `/sync`, then follows live over the socket. */
  async start(): Promise<void> {
    const run = ++this.runs;
    const filter = JSON.stringify({ room: { timeline: { limit: PAGE } } });
    const sync = await call(this.api.GET('/_matrix/client/v3/sync', { params: { query: { filter, timeout: 0 } } }));
    if (run !== this.runs) return;
    this.update((state) => applySync(state, sync));
    this.setView({ ...this.view, ready: true });
    this.socket.start();
  }

  stop(): void {
    this.runs += 1;
    this.socket.stop();
    for (const entry of this.outgoing.values()) clearTimeout(entry.timer);
    for (const url of this.mediaCache.values()) void url.then((u) => { URL.revokeObjectURL(u); }, () => undefined);
  }

  async logout(): Promise<void> {
    this.stop();
    await this.api.POST('/_matrix/client/v3/logout').catch(() => undefined);
  }

  private onFrame(frame: ServerFrame): void {
    if (frame.type.startsWith('call.')) return;
    const chat = frame as ChatFrame;
    switch (chat.type) {
      case 'message.sent':
        this.sent(chat.txn_id, chat.event_id);
        return;
      case 'error':
        if (chat.re && this.outgoing.has(chat.re)) this.failed(chat.re, describeError(new MatrixError(0, chat.errcode, chat.error)));
        return;
      default: {
        const before = this.view.chat;
        this.update((state) => applyFrame(state, chat));
        if (chat.type === 'message.new') this.afterNewEvent(before, chat.room_id);
      }
    }
  }

  /** A room new to this client needs its members and recent history. */
  private afterNewEvent(before: ClientState, roomId: string): void {
    const room = this.view.chat.rooms[roomId];
    if (!room) return;
    if (room.membership === 'join' && before.rooms[roomId]?.membership !== 'join') {
      void this.loadRoomState(roomId);
      void this.loadHistory(roomId);
    }
  }

  private async loadRoomState(roomId: string): Promise<void> {
    try {
      const events = await call(this.api.GET('/_matrix/client/v3/rooms/{room_id}/state', { params: { path: { room_id: roomId } } }));
      this.update((state) => applyRoomState(state, roomId, events));
    } catch {
      // The room list shows the id until the next try (opening the room).
    }
  }

  // --- Reading ---------------------------------------------------------------

  /** Reads one page of older history; false when there is no more. */
  async loadHistory(roomId: string): Promise<boolean> {
    const room = this.view.chat.rooms[roomId];
    if (!room || room.membership !== 'join' || this.view.loadingHistory.has(roomId)) return false;
    const from = room.timeline.prevBatch;
    if (from === null) return false;
    this.setView({ ...this.view, loadingHistory: new Set([...this.view.loadingHistory, roomId]) });
    try {
      const page = await call(
        this.api.GET('/_matrix/client/v3/rooms/{room_id}/messages', {
          params: { path: { room_id: roomId }, query: { dir: 'b', limit: PAGE, ...(from ? { from } : {}) } },
        }),
      );
      this.update((state) => applyHistory(state, roomId, page.chunk, page.chunk.length > 0 ? (page.end ?? null) : null));
      return page.end !== undefined && page.chunk.length > 0;
    } finally {
      const loading = new Set(this.view.loadingHistory);
      loading.delete(roomId);
      this.setView({ ...this.view, loadingHistory: loading });
    }
  }

  open(roomId: string | null): void {
    this.update((state) => openRoom(state, roomId));
    if (!roomId) return;
    const room = this.view.chat.rooms[roomId];
    if (room?.membership === 'join') {
      if (!room.stateLoaded) void this.loadRoomState(roomId);
      this.markRead(roomId);
    }
  }

  /** Tells the server (and so the others) how far we have read. */
  markRead(roomId: string): void {
    const room = this.view.chat.rooms[roomId];
    const latest = room ? [...room.timeline.items].reverse().find((item) => item.event.sender !== this.session.userId) : undefined;
    if (!latest || this.lastReceipt.get(roomId) === latest.event.event_id) return;
    const eventId = latest.event.event_id;
    this.lastReceipt.set(roomId, eventId);
    if (!this.socket.send({ type: 'receipt.send', room_id: roomId, event_id: eventId })) {
      void this.api.POST('/_matrix/client/v3/rooms/{room_id}/receipt/{receipt_type}/{event_id}', {
        params: { path: { room_id: roomId, receipt_type: 'm.read', event_id: eventId } },
        body: {},
      });
    }
  }

  dismissNotice(): void {
    this.update(dismissNotice);
  }

  /** A blob URL of the media at `path` (authenticated), fetched once. */
  media(path: string): Promise<string> {
    let url = this.mediaCache.get(path);
    if (!url) {
      url = fetchMedia(this.session.baseUrl, this.session.accessToken, path).then((blob) => URL.createObjectURL(blob));
      url.catch(() => this.mediaCache.delete(path));
      this.mediaCache.set(path, url);
    }
    return url;
  }

  // --- Sending ---------------------------------------------------------------

  private nextTxnId(): string {
    this.txnCounter += 1;
    return `web${Date.now().toString(36)}.${this.txnCounter}`;
  }

  private timeline(roomId: string, change: (timeline: Timeline) => Timeline): void {
    this.update((state) => updateTimeline(state, roomId, change));
  }

  private echo(roomId: string, txnId: string, content: Record<string, unknown>, progress?: number): void {
    const event: MatrixEvent = {
      event_id: localEventId(txnId),
      type: 'm.room.message',
      sender: this.session.userId,
      origin_server_ts: Date.now(),
      content,
    };
    this.timeline(roomId, (t) => addLocalEcho(t, { txnId, event, ...(progress !== undefined ? { progress } : {}) }));
  }

  sendText(roomId: string, body: string): void {
    const content = { msgtype: 'm.text', body };
    const txnId = this.nextTxnId();
    this.outgoing.set(txnId, { roomId, content });
    this.echo(roomId, txnId, content);
    this.setTyping(roomId, false);
    void this.transmit(txnId);
  }

  sendFile(roomId: string, file: File): void {
    const isImage = file.type.startsWith('image/');
    const content = {
      msgtype: isImage ? 'm.image' : 'm.file',
      body: file.name,
      info: { mimetype: file.type || 'application/octet-stream', size: file.size },
    };
    const txnId = this.nextTxnId();
    this.outgoing.set(txnId, { roomId, content, file });
    this.echo(roomId, txnId, content, 0);
    void this.transmit(txnId);
  }

  /** Sends again what failed, under the same transaction id (so never twice). */
  retry(txnId: string): void {
    const entry = this.outgoing.get(txnId);
    if (!entry) return;
    this.timeline(entry.roomId, (t) => markRetrying(t, txnId));
    void this.transmit(txnId);
  }

  discard(txnId: string): void {
    const entry = this.outgoing.get(txnId);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.outgoing.delete(txnId);
    this.timeline(entry.roomId, (t) => discardEcho(t, txnId));
  }

  private async transmit(txnId: string): Promise<void> {
    const entry = this.outgoing.get(txnId);
    if (!entry) return;
    const { roomId } = entry;
    try {
      if (entry.file) {
        const file = entry.file;
        const url = await uploadFile(this.upload, file, (progress) => {
          this.timeline(roomId, (t) => setEcho(t, txnId, { progress }));
        });
        entry.content = { ...entry.content, url };
        delete entry.file;
        this.timeline(roomId, (t) => setEcho(t, txnId, { progress: 1, content: entry.content }));
      }
      const frame = { type: 'message.send', room_id: roomId, txn_id: txnId, content: entry.content } as const;
      if (this.socket.send(frame)) {
        clearTimeout(entry.timer);
        entry.timer = setTimeout(() => {
          this.failed(txnId, 'No answer from the server');
        }, SEND_TIMEOUT_MS);
        return;
      }
      const answer = await call(
        this.api.PUT('/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}', {
          params: { path: { room_id: roomId, event_type: 'm.room.message', txn_id: txnId } },
          body: entry.content,
        }),
      );
      this.sent(txnId, answer.event_id);
    } catch (error) {
      this.failed(txnId, describeError(error));
    }
  }

  private sent(txnId: string, eventId: string): void {
    const entry = this.outgoing.get(txnId);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.outgoing.delete(txnId);
    this.timeline(entry.roomId, (t) => markSent(t, txnId, eventId));
  }

  private failed(txnId: string, reason: string): void {
    const entry = this.outgoing.get(txnId);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.timeline(entry.roomId, (t) => markFailed(t, txnId, reason));
  }

  /** Typing notices: renewed while typing, stopped when done. */
  setTyping(roomId: string, typing: boolean): void {
    const last = this.typingSent.get(roomId) ?? 0;
    if (typing) {
      if (Date.now() - last < TYPING_TIMEOUT_MS / 2) return;
      this.typingSent.set(roomId, Date.now());
      this.sendTyping(roomId, true);
    } else if (last) {
      this.typingSent.delete(roomId);
      this.sendTyping(roomId, false);
    }
  }

  private sendTyping(roomId: string, typing: boolean): void {
    const sentLive = typing
      ? this.socket.send({ type: 'typing.start', room_id: roomId, timeout_ms: TYPING_TIMEOUT_MS })
      : this.socket.send({ type: 'typing.stop', room_id: roomId });
    if (!sentLive) {
      void this.api.PUT('/_matrix/client/v3/rooms/{room_id}/typing/{user_id}', {
        params: { path: { room_id: roomId, user_id: this.session.userId } },
        body: { typing, ...(typing ? { timeout: TYPING_TIMEOUT_MS } : {}) },
      });
    }
  }

  // --- Rooms -----------------------------------------------------------------

  /** Opens the direct chat with `userId`, creating it (on any server) if there is none. */
  async startDirect(userId: string): Promise<string> {
    const state = this.view.chat;
    const existing = (state.direct[userId] ?? []).find((roomId) => state.rooms[roomId]?.membership === 'join');
    if (existing) return existing;
    const { room_id } = await call(
      this.api.POST('/_matrix/client/v3/createRoom', {
        body: { preset: 'trusted_private_chat', is_direct: true, invite: [userId] },
      }),
    );
    await this.rememberDirect(userId, room_id);
    return room_id;
  }

  /** Records a direct chat in `m.direct`, as every Matrix client reads it. */
  private async rememberDirect(userId: string, roomId: string): Promise<void> {
    const direct = withDirectRoom(this.view.chat.direct, userId, roomId);
    this.update((state) => setDirect(state, direct));
    await call(
      this.api.PUT('/_matrix/client/v3/user/{user_id}/account_data/{type}', {
        params: { path: { user_id: this.session.userId, type: 'm.direct' } },
        body: direct,
      }),
    );
  }

  async createGroup(name: string, invite: string[]): Promise<string> {
    const { room_id } = await call(
      this.api.POST('/_matrix/client/v3/createRoom', { body: { preset: 'private_chat', name, invite } }),
    );
    return room_id;
  }

  async acceptInvite(roomId: string): Promise<void> {
    const room = this.view.chat.rooms[roomId];
    await call(this.api.POST('/_matrix/client/v3/rooms/{room_id}/join', { params: { path: { room_id: roomId } }, body: {} }));
    if (room?.directHint && room.inviter) await this.rememberDirect(room.inviter, roomId);
  }

  async leave(roomId: string): Promise<void> {
    await call(this.api.POST('/_matrix/client/v3/rooms/{room_id}/leave', { params: { path: { room_id: roomId } }, body: {} }));
  }

  async invite(roomId: string, userId: string): Promise<void> {
    await call(
      this.api.POST('/_matrix/client/v3/rooms/{room_id}/invite', { params: { path: { room_id: roomId } }, body: { user_id: userId } }),
    );
  }

  async kick(roomId: string, userId: string): Promise<void> {
    await call(
      this.api.POST('/_matrix/client/v3/rooms/{room_id}/kick', { params: { path: { room_id: roomId } }, body: { user_id: userId } }),
    );
  }

  async rename(roomId: string, name: string): Promise<void> {
    await call(
      this.api.PUT('/_matrix/client/v3/rooms/{room_id}/state/{event_type}', {
        params: { path: { room_id: roomId, event_type: 'm.room.name' } },
        body: { name },
      }),
    );
  }
}

