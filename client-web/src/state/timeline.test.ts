import { describe, expect, it } from 'vitest';

import type { MatrixEvent } from './events';
import {
  addLocalEcho,
  appendEvents,
  discardEcho,
  emptyTimeline,
  localEventId,
  markFailed,
  markRetrying,
  markSent,
  prependHistory,
  setEcho,
  visibleItems,
  type Timeline,
} from './timeline';

function event(id: string, body = id, sender = '@bob:x', extra: Partial<MatrixEvent> = {}): MatrixEvent {
  return { event_id: id, type: 'm.room.message', sender, origin_server_ts: 1, content: { msgtype: 'm.text', body }, ...extra };
}

function echo(timeline: Timeline, txnId: string, body: string): Timeline {
  return addLocalEcho(timeline, { txnId, event: event(localEventId(txnId), body, '@me:x') });
}

const ids = (t: Timeline) => visibleItems(t).map((item) => item.event.event_id);

describe('appending live events', () => {
  it('keeps server order and drops repeats', () => {
    let t = appendEvents(emptyTimeline, [event('$1'), event('$2')]);
    t = appendEvents(t, [event('$2'), event('$3')]);
    expect(ids(t)).toEqual(['$1', '$2', '$3']);
  });

  it('returns the same timeline when nothing is new', () => {
    const t = appendEvents(emptyTimeline, [event('$1')]);
    expect(appendEvents(t, [event('$1')])).toBe(t);
  });
});

describe('history', () => {
  it('puts older events first, oldest at the top, and moves the token', () => {
    let t = appendEvents({ ...emptyTimeline, prevBatch: 'p1' }, [event('$3'), event('$4')]);
    t = prependHistory(t, [event('$2'), event('$1')], 'p0');
    expect(ids(t)).toEqual(['$1', '$2', '$3', '$4']);
    expect(t.prevBatch).toBe('p0');
  });

  it('skips events it already has (overlapping pages)', () => {
    let t = appendEvents(emptyTimeline, [event('$2'), event('$3')]);
    t = prependHistory(t, [event('$3'), event('$2'), event('$1')], null);
    expect(ids(t)).toEqual(['$1', '$2', '$3']);
    expect(t.prevBatch).toBeNull();
  });

  it('keeps local echoes after history', () => {
    let t = echo(emptyTimeline, 't1', 'hi');
    t = prependHistory(t, [event('$1')], null);
    expect(ids(t)).toEqual(['$1', '~t1']);
  });
});

describe('local echo', () => {
  it('shows a message as sending, after the confirmed events', () => {
    let t = appendEvents(emptyTimeline, [event('$1')]);
    t = echo(t, 't1', 'hello');
    const items = visibleItems(t);
    expect(items.map((i) => i.event.event_id)).toEqual(['$1', '~t1']);
    expect(items[1]?.sendState).toBe('sending');
  });

  it('is replaced by the server event when the acknowledgement comes first', () => {
    let t = echo(emptyTimeline, 't1', 'hello');
    t = markSent(t, 't1', '$9');
    expect(visibleItems(t)[0]?.sendState).toBe('sent');
    t = appendEvents(t, [event('$9', 'hello', '@me:x')]);
    expect(ids(t)).toEqual(['$9']);
    expect(t.pending).toEqual([]);
    const [item] = visibleItems(t);
    expect(item?.key).toBe('~t1');
    expect(item?.sendState).toBe('sent');
  });

  it('is replaced by the server event when the event comes first', () => {
    let t = echo(emptyTimeline, 't1', 'hello');
    t = appendEvents(t, [event('$9', 'hello', '@me:x')]);
    t = markSent(t, 't1', '$9');
    expect(ids(t)).toEqual(['$9']);
    expect(visibleItems(t)[0]?.sendState).toBe('sent');
    expect(visibleItems(t)[0]?.key).toBe('~t1');
  });

  it('matches the server event by transaction id when the server names it', () => {
    let t = echo(emptyTimeline, 't1', 'hello');
    t = appendEvents(t, [event('$9', 'hello', '@me:x', { unsigned: { transaction_id: 't1' } })]);
    expect(ids(t)).toEqual(['$9']);
    expect(t.pending).toEqual([]);
  });

  it('keeps confirmed events in server order, whatever order echoes were sent', () => {
    let t = echo(emptyTimeline, 't1', 'first');
    t = echo(t, 't2', 'second');
    t = appendEvents(t, [event('$b', 'from bob')]);
    t = markSent(t, 't2', '$2');
    t = appendEvents(t, [event('$1', 'first', '@me:x'), event('$2', 'second', '@me:x')]);
    t = markSent(t, 't1', '$1');
    expect(ids(t)).toEqual(['$b', '$1', '$2']);
    expect(visibleItems(t).filter((i) => i.sendState === 'sent')).toHaveLength(2);
  });
});

describe('sending state', () => {
  it('goes sending -> failed -> sending -> sent on a retry', () => {
    let t = echo(emptyTimeline, 't1', 'hello');
    t = markFailed(t, 't1', 'No answer from the server');
    expect(t.pending[0]).toMatchObject({ sendState: 'failed', error: 'No answer from the server' });
    t = markRetrying(t, 't1');
    expect(t.pending[0]?.sendState).toBe('sending');
    expect(t.pending[0]?.error).toBeUndefined();
    t = markSent(t, 't1', '$1');
    expect(t.pending[0]?.sendState).toBe('sent');
    expect(t.pending[0]?.event.event_id).toBe('$1');
  });

  it('does not mark as failed what the server already accepted', () => {
    let t = echo(emptyTimeline, 't1', 'hello');
    t = markSent(t, 't1', '$1');
    t = markFailed(t, 't1', 'late timeout');
    expect(t.pending[0]?.sendState).toBe('sent');
  });

  it('tracks upload progress, then the uploaded content', () => {
    let t = addLocalEcho(emptyTimeline, { txnId: 't1', event: event('~t1', 'cat.png', '@me:x'), progress: 0 });
    t = setEcho(t, 't1', { progress: 0.5 });
    expect(t.pending[0]?.progress).toBe(0.5);
    t = setEcho(t, 't1', { progress: 1, content: { msgtype: 'm.image', body: 'cat.png', url: 'mxc://x/1' } });
    expect(t.pending[0]?.event.content.url).toBe('mxc://x/1');
  });

  it('forgets a discarded message and ignores unknown transactions', () => {
    let t = echo(emptyTimeline, 't1', 'hello');
    expect(markFailed(t, 'nope', 'x')).toBe(t);
    t = discardEcho(t, 't1');
    expect(ids(t)).toEqual([]);
  });
});
