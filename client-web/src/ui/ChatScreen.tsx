import { useEffect, useMemo, useState, useSyncExternalStore } from 'react';

import { browserEnvironment, CallManager } from '../call/manager';
import type { ChatClient } from '../state/chat';
import { Dialogs, type DialogKind } from './Dialogs';
import { RoomList } from './RoomList';
import { RoomView } from './RoomView';

const connectionText = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  stopped: 'Offline',
} as const;

/** The signed-in screen: rooms on the left, the open room on the right (one at a time on a phone). */
export function ChatScreen({
  client,
  startError,
  onSignOut,
}: {
  client: ChatClient;
  startError: string | null;
  onSignOut: () => void;
}) {
  const view = useSyncExternalStore(client.subscribe, client.getSnapshot);
  const [dialog, setDialog] = useState<DialogKind | null>(null);
  const calls = useMemo(() => new CallManager(client.session.userId, browserEnvironment(client.live, client.api)), [client]);
  useEffect(() => {
    calls.start();
    return () => { calls.stop(); };
  }, [calls]);
  const { chat } = view;
  const openRoom = chat.openRoomId ? chat.rooms[chat.openRoomId] : undefined;

  return (
    <div className={`chat ${openRoom ? 'room-open' : ''}`}>
      <aside className="sidebar" aria-label="Conversations">
        <header className="me">
          <div>
            <strong className="user-id" title={chat.userId}>{chat.userId}</strong>
            <span className={`connection ${view.connection}`} role="status">
              {connectionText[view.connection]}
            </span>
          </div>
          <button type="button" className="quiet" onClick={onSignOut}>
            Sign out
          </button>
        </header>
        <div className="actions">
          <button type="button" onClick={() => { setDialog('direct'); }}>
            New chat
          </button>
          <button type="button" onClick={() => { setDialog('group'); }}>
            New group
          </button>
        </div>
        {startError && (
          <p className="error" role="alert">
            Could not load your rooms: {startError}
          </p>
        )}
        {chat.notice && (
          <p className="notice" role="status">
            {chat.notice}{' '}
            <button type="button" className="link" onClick={() => { client.dismissNotice(); }}>
              Dismiss
            </button>
          </p>
        )}
        <RoomList client={client} state={chat} ready={view.ready} />
      </aside>
      <main className="main">
        {view.connection === 'reconnecting' && (
          <p className="banner" role="status">
            Connection lost, reconnecting… Messages you send meanwhile go out over HTTP.
          </p>
        )}
        {openRoom ? (
          <RoomView
            key={openRoom.roomId}
            client={client}
            calls={calls}
            state={chat}
            room={openRoom}
            loadingHistory={view.loadingHistory.has(openRoom.roomId)}
            onManage={(kind) => { setDialog(kind); }}
          />
        ) : (
          <div className="empty">
            <h2>Welcome to TeaTime</h2>
            <p>Pick a conversation, or start a new chat with anyone on any Matrix server.</p>
          </div>
        )}
      </main>
      {dialog && (
        <Dialogs
          kind={dialog}
          client={client}
          state={chat}
          room={openRoom}
          onClose={() => { setDialog(null); }}
        />
      )}
    </div>
  );
}
