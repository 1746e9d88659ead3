// The live connection: TeaTime's WebSocket, authenticated with the access
// token, reconnecting with backoff and resuming from the last token it saw,
// so nothing is missed and nothing repeated across drops and server restarts.

import { parseFrame, type ClientFrame, type ServerFrame } from './protocol';

export type ConnectionStatus = 'connecting' | 'live' | 'reconnecting' | 'stopped';

/** `http(s)://host/base` -> `ws(s)://host/base/_teatime/ws`. */
export function socketUrl(baseUrl: string): string {
  return `${baseUrl.replace(/^http/i, 'ws').replace(/\/+$/, '')}/_teatime/ws`;
}

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;

/** Wait before reconnect attempt `attempt` (0-based): doubling, capped, with jitter in [50%, 100%]. */
export function reconnectDelay(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling * (0.5 + random() / 2));
}

/** The first frame on a (re)connected socket: resume after `since` when there is one. */
export function authFrame(token: string, since: string | null): ClientFrame {
  return since ? { type: 'auth', token, since } : { type: 'auth', token };
}

/** How often the client pings, and how long a silent socket is trusted. */
const PING_EVERY_MS = 25_000;
const SILENCE_LIMIT_MS = 60_000;

export interface SocketOptions {
  baseUrl: string;
  token: string;
  /** The token to resume from, read at each (re)connect. */
  since: () => string | null;
  onStatus: (status: ConnectionStatus) => void;
  /** The server refused the access token: the session is over. */
  onAuthFailed: (errcode: string, message: string) => void;
  /** The WebSocket constructor (the browser's by default). */
  WebSocketImpl?: typeof WebSocket;
}

type Listener = (frame: ServerFrame) => void;

export class LiveSocket {
  private socket: WebSocket | null = null;
  private authenticated = false;
  private attempt = 0;
  private stopped = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private lastHeard = 0;
  private readonly listeners = new Set<Listener>();

  constructor(private readonly options: SocketOptions) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.socket?.close(1000);
    this.socket = null;
    this.authenticated = false;
    this.options.onStatus('stopped');
  }

  /** Receives every frame (chat frames and call frames). */
  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Sends a frame if the socket is live; false when it is not. */
  send(frame: ClientFrame): boolean {
    if (!this.socket || !this.authenticated || this.socket.readyState !== 1) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  get live(): boolean {
    return this.authenticated;
  }

  private connect(): void {
    const Impl = this.options.WebSocketImpl ?? WebSocket;
    this.options.onStatus(this.attempt === 0 ? 'connecting' : 'reconnecting');
    const socket = new Impl(socketUrl(this.options.baseUrl));
    this.socket = socket;
    socket.onopen = () => {
      this.lastHeard = Date.now();
      socket.send(JSON.stringify(authFrame(this.options.token, this.options.since())));
    };
    socket.onmessage = (message: MessageEvent) => {
      if (typeof message.data !== 'string') return;
      this.lastHeard = Date.now();
      const frame = parseFrame(message.data);
      if (!frame) return;
      if (frame.type === 'auth.success') {
        this.authenticated = true;
        this.attempt = 0;
        this.startPinging(socket);
        this.options.onStatus('live');
      } else if (frame.type === 'error' && frame.re === 'auth') {
        if (frame.errcode === 'M_UNKNOWN_TOKEN' || frame.errcode === 'M_MISSING_TOKEN') {
          this.stopped = true;
          this.options.onAuthFailed(frame.errcode, frame.error);
        }
      }
      for (const listener of this.listeners) listener(frame);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.authenticated = false;
      clearInterval(this.pingTimer);
      if (this.stopped) return;
      this.options.onStatus('reconnecting');
      this.retryTimer = setTimeout(() => {
        this.connect();
      }, reconnectDelay(this.attempt++));
    };
  }

  /** Pings keep proxies from closing an idle socket; silence means it is dead. */
  private startPinging(socket: WebSocket): void {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
        socket.close();
        return;
      }
      this.send({ type: 'ping' });
    }, PING_EVERY_MS);
  }
}
