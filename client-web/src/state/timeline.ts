// A room's timeline: events the server confirmed, in server order, followed
// by local echoes of what this client is sending. Pure functions: each
// returns a new timeline and leaves its input alone.

import type { MatrixEvent } from './events';

export type SendState = 'sending' | 'sent' | 'failed';

export interface TimelineItem {
  /** Stable across the local echo becoming the server's event (React key). */
  key: string;
  event: MatrixEvent;
  /** Set on what this client sent in this session. */
  txnId?: string;
  sendState?: SendState;
  /** Why sending failed, in words. */
  error?: string;
  /** Upload progress of an attachment being sent, 0..1. */
  progress?: number;
}

export interface Timeline {
  /** Confirmed events, oldest first. */
  items: TimelineItem[];
  /** Local echoes not yet seen from the server, in the order they were sent. */
  pending: TimelineItem[];
  /**
   * Token to read older history with `/messages?dir=b`: null when there is no
   * more, '' to read from the newest event (a room joined while connected).
   */
  prevBatch: string | null;
}

export const emptyTimeline: Timeline = { items: [], pending: [], prevBatch: '' };

/** Id given to a local echo until the server names the event. */
export function localEventId(txnId: string): string {
  return `~${txnId}`;
}

function matchesEcho(echo: TimelineItem, event: MatrixEvent): boolean {
  return (
    (echo.txnId !== undefined && event.unsigned?.transaction_id === echo.txnId) ||
    echo.event.event_id === event.event_id
  );
}

/** The confirmed event, taking over the key and state of its local echo. */
function confirm(echo: TimelineItem, event: MatrixEvent): TimelineItem {
  return { key: echo.key, event, ...(echo.txnId ? { txnId: echo.txnId } : {}), sendState: 'sent' };
}

/** Adds new events at the end (live delivery), once each. */
export function appendEvents(timeline: Timeline, events: readonly MatrixEvent[]): Timeline {
  const known = new Set(timeline.items.map((item) => item.event.event_id));
  let pending = timeline.pending;
  const added: TimelineItem[] = [];
  for (const event of events) {
    if (known.has(event.event_id)) continue;
    known.add(event.event_id);
    const echo = pending.find((item) => matchesEcho(item, event));
    if (echo) {
      pending = pending.filter((item) => item !== echo);
      added.push(confirm(echo, event));
    } else {
      added.push({ key: event.event_id, event });
    }
  }
  if (added.length === 0) return timeline;
  return { ...timeline, items: [...timeline.items, ...added], pending };
}

/**
 * Adds older events at the start (back pagination; `events` newest first, as
 * `/messages?dir=b` returns them), once each, and moves the history token.
 */
export function prependHistory(
  timeline: Timeline,
  newestFirst: readonly MatrixEvent[],
  prevBatch: string | null,
): Timeline {
  const known = new Set(timeline.items.map((item) => item.event.event_id));
  const older: TimelineItem[] = [];
  for (const event of newestFirst) {
    if (known.has(event.event_id)) continue;
    known.add(event.event_id);
    older.unshift({ key: event.event_id, event });
  }
  return { ...timeline, items: [...older, ...timeline.items], prevBatch };
}

/** Shows a message being sent before the server has it. */
export function addLocalEcho(timeline: Timeline, echo: { txnId: string; event: MatrixEvent; progress?: number }): Timeline {
  const item: TimelineItem = {
    key: echo.event.event_id,
    event: echo.event,
    txnId: echo.txnId,
    sendState: 'sending',
    ...(echo.progress !== undefined ? { progress: echo.progress } : {}),
  };
  return { ...timeline, pending: [...timeline.pending, item] };
}

function updatePending(timeline: Timeline, txnId: string, update: (item: TimelineItem) => TimelineItem): Timeline {
  if (!timeline.pending.some((item) => item.txnId === txnId)) return timeline;
  return { ...timeline, pending: timeline.pending.map((item) => (item.txnId === txnId ? update(item) : item)) };
}

/**
 * The server accepted a message as `eventId`. If its event already arrived,
 * the echo is gone; otherwise the echo waits for it, marked sent.
 */
export function markSent(timeline: Timeline, txnId: string, eventId: string): Timeline {
  const arrived = timeline.items.findIndex((item) => item.event.event_id === eventId);
  if (arrived >= 0) {
    const echo = timeline.pending.find((item) => item.txnId === txnId);
    const items = timeline.items.slice();
    const confirmed = items[arrived];
    if (echo && confirmed) items[arrived] = confirm(echo, confirmed.event);
    return { ...timeline, items, pending: timeline.pending.filter((item) => item.txnId !== txnId) };
  }
  return updatePending(timeline, txnId, (item) => {
    const { error: _error, progress: _progress, ...rest } = item;
    return { ...rest, sendState: 'sent', event: { ...item.event, event_id: eventId } };
  });
}

/** Sending failed; the echo stays, marked failed, until retried. */
export function markFailed(timeline: Timeline, txnId: string, error: string): Timeline {
  return updatePending(timeline, txnId, (item) =>
    item.sendState === 'sent' ? item : { ...item, sendState: 'failed', error },
  );
}

/** A failed message is being sent again (with the same transaction id). */
export function markRetrying(timeline: Timeline, txnId: string): Timeline {
  return updatePending(timeline, txnId, (item) => {
    const { error: _error, ...rest } = item;
    return { ...rest, sendState: 'sending' };
  });
}

/** Upload progress of an attachment (0..1); content replaces the echo's once uploaded. */
export function setEcho(
  timeline: Timeline,
  txnId: string,
  change: { progress?: number; content?: Record<string, unknown> },
): Timeline {
  return updatePending(timeline, txnId, (item) => ({
    ...item,
    ...(change.progress !== undefined ? { progress: change.progress } : {}),
    ...(change.content ? { event: { ...item.event, content: change.content } } : {}),
  }));
}

/** Drops a failed message the person gave up on. */
export function discardEcho(timeline: Timeline, txnId: string): Timeline {
  return { ...timeline, pending: timeline.pending.filter((item) => item.txnId !== txnId) };
}

/** Everything to show, oldest first. */
export function visibleItems(timeline: Timeline): TimelineItem[] {
  return [...timeline.items, ...timeline.pending];
}
