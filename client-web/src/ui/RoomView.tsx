import { useEffect, useLayoutEffect, useRef, useState, useSyncExternalStore, type SyntheticEvent, type KeyboardEvent } from 'react';

import type { CallManager } from '../call/manager';
import { participantsOf } from '../call/state';
import type { ChatClient } from '../state/chat';
import { displayName, isDirect, otherMembers, roomName, seenBy, type ClientState, type Room } from '../state/rooms';
import { visibleItems } from '../state/timeline';
import { CallPanel } from './CallPanel';
import type { DialogKind } from './Dialogs';
import { Message } from './Message';
import { typingText } from './format';

function Composer({ client, room }: { client: ChatClient; room: Room }) {
  const [draft, setDraft] = useState('');
  const fileInput = useRef<HTMLInputElement>(null);
  const roomId = room.roomId;

  const send = (e?: SyntheticEvent) => {
    e?.preventDefault();
    const body = draft.trim();
    if (!body) return;
    client.sendText(roomId, body);
    setDraft('');
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      send();
    }
  };

  return (
    <form className="composer" onSubmit={send}>
      <input
        ref={fileInput}
        type="file"
        hidden
        aria-label="Attach a file"
        onChange={(e) => {
          for (const file of e.target.files ?? []) client.sendFile(roomId, file);
          e.target.value = '';
        }}
      />
      <button type="button" className="icon" aria-label="Attach a file" title="Attach a file" onClick={() => fileInput.current?.click()}>
        <svg width="20" height="20" viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round">
          <path d="M21 11.5l-8.6 8.6a5.5 5.5 0 0 1-7.8-7.8l8.6-8.6a3.7 3.7 0 0 1 5.2 5.2l-8.6 8.6a1.8 1.8 0 0 1-2.6-2.6l7.9-7.9" />
        </svg>
      </button>
      <textarea
        aria-label="Message"
        placeholder="Write a message…"
        rows={1}
        value={draft}
        onChange={(e) => {
          setDraft(e.target.value);
          client.setTyping(roomId, e.target.value.length > 0);
        }}
        onBlur={() => { client.setTyping(roomId, false); }}
        onKeyDown={onKeyDown}
      />
      <button type="submit" className="primary" disabled={!draft.trim()}>
        Send
      </button>
    </form>
  );
}

/** The open room: header, its call, timeline with history on scroll, who is typing, the composer. */
export function RoomView({
  client,
  calls,
  state,
  room,
  loadingHistory,
  onManage,
}: {
  client: ChatClient;
  calls: CallManager;
  state: ClientState;
  room: Room;
  loadingHistory: boolean;
  onManage: (kind: DialogKind) => void;
}) {
  const scroller = useRef<HTMLDivElement>(null);
  const topSentinel = useRef<HTMLDivElement>(null);
  const stickToBottom = useRef(true);
  const heightBefore = useRef<number | null>(null);
  const items = visibleItems(room.timeline);
  const direct = isDirect(room, state);
  const name = roomName(room, state);
  const readers = seenBy(room, state.userId);
  const typing = room.typing.map((id) => displayName(room, id));
  const memberCount = otherMembers(room, state.userId).length + 1;
  const roomId = room.roomId;
  const prevBatch = room.timeline.prevBatch;
  const hasMore = prevBatch !== null;
  const callView = useSyncExternalStore(calls.subscribe, calls.getSnapshot);
  const inThisCall = callView.state.active?.roomId === roomId;
  const callOngoing = participantsOf(callView.state, roomId).length > 0;

  // A call belongs to its room's screen: opening another room (or none) leaves it.
  useEffect(() => () => { calls.leave(roomId); }, [calls, roomId]);

  // Reads older history when the top of the timeline comes into view.
  useEffect(() => {
    const sentinel = topSentinel.current;
    const container = scroller.current;
    if (!sentinel || !container || prevBatch === null) return;
    const observer = new IntersectionObserver(
      (entries) => {
        if (!entries.some((entry) => entry.isIntersecting)) return;
        heightBefore.current = container.scrollHeight;
        client.loadHistory(roomId).catch(() => undefined);
      },
      { root: container, rootMargin: '200px 0px 0px 0px' },
    );
    observer.observe(sentinel);
    return () => { observer.disconnect(); };
  }, [client, roomId, prevBatch, items.length]);

  // Keeps the view at the bottom for new messages, and in place when history is added above.
  useLayoutEffect(() => {
    const container = scroller.current;
    if (!container) return;
    if (heightBefore.current !== null && !stickToBottom.current) {
      container.scrollTop += container.scrollHeight - heightBefore.current;
    } else if (stickToBottom.current) {
      container.scrollTop = container.scrollHeight;
    }
    heightBefore.current = null;
  }, [items.length, typing.length]);

  // Messages arriving while the room is open and the page is in view count as read.
  const newest = room.timeline.items.at(-1)?.event.event_id;
  useEffect(() => {
    const read = () => {
      if (newest && document.visibilityState === 'visible') client.markRead(roomId);
    };
    read();
    document.addEventListener('visibilitychange', read);
    return () => { document.removeEventListener('visibilitychange', read); };
  }, [client, roomId, newest]);

  const lastReadBy = new Map<string, string[]>();
  for (const item of items) {
    const who = readers.get(item.event.event_id);
    if (who) lastReadBy.set(item.key, who.map((id) => displayName(room, id)));
  }

  return (
    <section className="room-view" aria-label={name}>
      <header className="room-header">
        <button type="button" className="icon back" aria-label="Back to conversations" onClick={() => { client.open(null); }}>
          ←
        </button>
        <div className="room-title">
          <h2>{name}</h2>
          <span className="subtitle">{direct ? 'Direct chat' : `${memberCount} members`}</span>
        </div>
        <div className="room-actions">
          {!inThisCall && (
            <button type="button" className={callOngoing ? 'primary call-start' : 'quiet call-start'} onClick={() => void calls.join(roomId)}>
              {callOngoing ? 'Join call' : 'Start call'}
            </button>
          )}
          {!direct && (
            <button type="button" className="quiet" onClick={() => { onManage('rename'); }}>
              Rename
            </button>
          )}
          <button type="button" className="quiet" onClick={() => { onManage('members'); }}>
            Members
          </button>
          <button type="button" className="quiet danger" onClick={() => { onManage('leave'); }}>
            Leave
          </button>
        </div>
      </header>
      <CallPanel calls={calls} view={callView} room={room} />
      <div
        className="timeline"
        ref={scroller}
        role="log"
        aria-label={`Messages in ${name}`}
        aria-live="polite"
        tabIndex={0}
        onScroll={(e) => {
          const el = e.currentTarget;
          stickToBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
        }}
      >
        <div ref={topSentinel} className="history-edge">
          {loadingHistory ? 'Loading earlier messages…' : hasMore ? '' : 'This is the beginning of the conversation.'}
        </div>
        {items.map((item) => (
          <Message
            key={item.key}
            client={client}
            room={room}
            item={item}
            mine={item.event.sender === state.userId}
            readBy={lastReadBy.get(item.key)}
          />
        ))}
      </div>
      <div className="typing" aria-live="polite">
        {typingText(typing)}
      </div>
      <Composer client={client} room={room} />
    </section>
  );
}
