import { useState, type KeyboardEvent } from 'react';

import { describeError } from '../api/client';
import type { ChatClient } from '../state/chat';
import { roomSummaries, type ClientState, type RoomSummary } from '../state/rooms';
import { Avatar } from './Avatar';
import { formatTime, messagePreview } from './format';

/** Moves focus between the list's buttons with the arrow keys. */
function arrowKeys(e: KeyboardEvent<HTMLUListElement>) {
  if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
  const buttons = [...e.currentTarget.querySelectorAll<HTMLButtonElement>('button.room')];
  const at = buttons.findIndex((b) => b === document.activeElement);
  const next = buttons[e.key === 'ArrowDown' ? Math.min(at + 1, buttons.length - 1) : Math.max(at - 1, 0)];
  if (next) {
    e.preventDefault();
    next.focus();
  }
}

function Invite({ client, summary }: { client: ChatClient; summary: RoomSummary }) {
  const [error, setError] = useState<string | null>(null);
  const act = (action: () => Promise<void>) => {
    setError(null);
    action().catch((e: unknown) => {
      setError(describeError(e));
    });
  };
  const { room } = summary;
  return (
    <li className="invite">
      <Avatar name={summary.name} />
      <div className="room-text">
        <span className="room-name">{summary.name}</span>
        <span className="preview">
          {summary.direct ? 'wants to chat' : 'invited you'}
          {room.inviter && !summary.direct ? ` (${room.inviter})` : ''}
        </span>
        {error && <span className="error" role="alert">{error}</span>}
      </div>
      <div className="invite-actions">
        <button type="button" className="primary small" onClick={() => { act(() => client.acceptInvite(room.roomId)); }}>
          Accept
        </button>
        <button type="button" className="quiet small" onClick={() => { act(() => client.leave(room.roomId)); }}>
          Decline
        </button>
      </div>
    </li>
  );
}

export function RoomList({ client, state, ready }: { client: ChatClient; state: ClientState; ready: boolean }) {
  const summaries = roomSummaries(state);
  if (!ready) return <p className="hint">Loading your rooms…</p>;
  if (summaries.length === 0) return <p className="hint">No conversations yet.</p>;
  return (
    <ul className="rooms" aria-label="Rooms" onKeyDown={arrowKeys}>
      {summaries.map((summary) =>
        summary.room.membership === 'invite' ? (
          <Invite key={summary.room.roomId} client={client} summary={summary} />
        ) : (
          <li key={summary.room.roomId}>
            <button
              type="button"
              className="room"
              aria-current={state.openRoomId === summary.room.roomId ? 'true' : undefined}
              onClick={() => { client.open(summary.room.roomId); }}
            >
              <Avatar name={summary.name} group={!summary.direct} />
              <span className="room-text">
                <span className="room-name">{summary.name}</span>
                <span className="preview">
                  {summary.lastMessage ? messagePreview(summary.lastMessage, state.userId) : summary.direct ? 'Direct chat' : 'Group'}
                </span>
              </span>
              <span className="room-side">
                {summary.lastActivity > 0 && <time className="when">{formatTime(summary.lastActivity)}</time>}
                {summary.room.unread > 0 && (
                <span className="badge" aria-label={`${summary.room.unread} unread`}>
                  {summary.room.unread > 99 ? '99+' : summary.room.unread}
                  </span>
                )}
              </span>
            </button>
          </li>
        ),
      )}
    </ul>
  );
}
