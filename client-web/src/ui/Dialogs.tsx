import { useEffect, useId, useRef, useState, type SyntheticEvent, type ReactNode } from 'react';

import { describeError } from '../api/client';
import type { ChatClient } from '../state/chat';
import { displayName, isDirect, roomName, type ClientState, type Room } from '../state/rooms';
import { parseUserId } from '../state/session';

export type DialogKind = 'direct' | 'group' | 'rename' | 'members' | 'leave';

/** A modal dialog (the browser's <dialog>: focus kept inside, Escape closes). */
function Modal({ title, onClose, children }: { title: string; onClose: () => void; children: ReactNode }) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
  }, []);
  return (
    <dialog ref={ref} className="modal" aria-labelledby={titleId} onClose={onClose}>
      <header>
        <h2 id={titleId}>{title}</h2>
        <button type="button" className="icon" aria-label="Close" onClick={onClose}>
          ×
        </button>
      </header>
      {children}
    </dialog>
  );
}

/** Runs an action, keeping its error readable and the button busy meanwhile. */
function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const run = (action: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    action()
      .catch((e: unknown) => { setError(describeError(e)); })
      .finally(() => { setBusy(false); });
  };
  /** Runs `action` with the user id typed in `input`, or says what a user id looks like. */
  const withUserId = (input: string, action: (userId: string) => Promise<void>) => {
    const userId = parseUserId(input);
    if (userId) run(() => action(userId));
    else setError('Enter a full user id, like @alice:example.org');
  };
  return { busy, error, setError, run, withUserId };
}

function ErrorText({ error }: { error: string | null }) {
  return error ? <p className="error" role="alert">{error}</p> : null;
}

/** `@a:x, @b:y` -> the user ids, or the first bad one. */
function parseUserIds(input: string): { ids: string[]; bad?: string } {
  const ids: string[] = [];
  for (const part of input.split(/[\s,]+/).filter(Boolean)) {
    const id = parseUserId(part);
    if (!id) return { ids, bad: part };
    ids.push(id);
  }
  return { ids };
}

function DirectDialog({ client, onClose }: { client: ChatClient; onClose: () => void }) {
  const [userId, setUserId] = useState('');
  const { busy, error, withUserId } = useAction();
  const id = useId();
  const submit = (e: SyntheticEvent) => {
    e.preventDefault();
    withUserId(userId, async (target) => {
      const roomId = await client.startDirect(target);
      client.open(roomId);
      onClose();
    });
  };
  return (
    <Modal title="New chat" onClose={onClose}>
      <form onSubmit={submit}>
        <label htmlFor={id}>User id</label>
        <input id={id} value={userId} onChange={(e) => { setUserId(e.target.value); }} placeholder="@alice:example.org" autoFocus spellCheck={false} autoCapitalize="none" />
        <p className="hint">Anyone on any Matrix server.</p>
        <ErrorText error={error} />
        <button type="submit" className="primary" disabled={busy}>Start chat</button>
      </form>
    </Modal>
  );
}

function GroupDialog({ client, onClose }: { client: ChatClient; onClose: () => void }) {
  const [name, setName] = useState('');
  const [members, setMembers] = useState('');
  const { busy, error, setError, run } = useAction();
  const ids = useId();
  const submit = (e: SyntheticEvent) => {
    e.preventDefault();
    const { ids: invite, bad } = parseUserIds(members);
    if (bad) {
      setError(`“${bad}” is not a user id (like @alice:example.org)`);
      return;
    }
    run(async () => {
      const roomId = await client.createGroup(name.trim(), invite);
      client.open(roomId);
      onClose();
    });
  };
  return (
    <Modal title="New group" onClose={onClose}>
      <form onSubmit={submit}>
        <label htmlFor={`${ids}-name`}>Group name</label>
        <input id={`${ids}-name`} value={name} onChange={(e) => { setName(e.target.value); }} required autoFocus />
        <label htmlFor={`${ids}-members`}>Members</label>
        <input id={`${ids}-members`} value={members} onChange={(e) => { setMembers(e.target.value); }} placeholder="@bob:example.org, @carol:other.org" spellCheck={false} autoCapitalize="none" />
        <ErrorText error={error} />
        <button type="submit" className="primary" disabled={busy}>Create group</button>
      </form>
    </Modal>
  );
}

function RenameDialog({ client, room, state, onClose }: { client: ChatClient; room: Room; state: ClientState; onClose: () => void }) {
  const [name, setName] = useState(() => roomName(room, state));
  const { busy, error, run } = useAction();
  const id = useId();
  return (
    <Modal title="Rename group" onClose={onClose}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          run(async () => {
            await client.rename(room.roomId, name.trim());
            onClose();
          });
        }}
      >
        <label htmlFor={id}>New name</label>
        <input id={id} value={name} onChange={(e) => { setName(e.target.value); }} required autoFocus />
        <ErrorText error={error} />
        <button type="submit" className="primary" disabled={busy}>Rename</button>
      </form>
    </Modal>
  );
}

function MembersDialog({ client, room, state, onClose }: { client: ChatClient; room: Room; state: ClientState; onClose: () => void }) {
  const [invitee, setInvitee] = useState('');
  const { busy, error, run, withUserId } = useAction();
  const id = useId();
  const direct = isDirect(room, state);
  const members = Object.entries(room.members)
    .filter(([, m]) => m.membership === 'join' || m.membership === 'invite')
    .sort(([a], [b]) => a.localeCompare(b));
  const invite = (e: SyntheticEvent) => {
    e.preventDefault();
    withUserId(invitee, async (target) => {
      await client.invite(room.roomId, target);
      setInvitee('');
    });
  };
  return (
    <Modal title="Members" onClose={onClose}>
      <ul className="members" aria-label="Members">
        {members.map(([userId, member]) => (
          <li key={userId}>
            <span className="member">
              <span>
                {displayName(room, userId)}
                {userId === state.userId && ' (you)'}
                {member.membership === 'invite' && <span className="hint">invited</span>}
              </span>
              <span className="user-id-small">{userId}</span>
            </span>
            {!direct && userId !== state.userId && (
              <button
                type="button"
                className="quiet danger small"
                aria-label={`Remove ${userId}`}
                disabled={busy}
                onClick={() => { run(() => client.kick(room.roomId, userId)); }}
              >
                Remove
              </button>
            )}
          </li>
        ))}
      </ul>
      {!direct && (
        <form onSubmit={invite}>
          <label htmlFor={id}>Add someone</label>
          <div className="row">
            <input id={id} value={invitee} onChange={(e) => { setInvitee(e.target.value); }} placeholder="@dave:example.org" spellCheck={false} autoCapitalize="none" />
            <button type="submit" className="primary" disabled={busy}>Invite</button>
          </div>
        </form>
      )}
      <ErrorText error={error} />
    </Modal>
  );
}

function LeaveDialog({ client, room, state, onClose }: { client: ChatClient; room: Room; state: ClientState; onClose: () => void }) {
  const { busy, error, run } = useAction();
  return (
    <Modal title={`Leave ${roomName(room, state)}?`} onClose={onClose}>
      <p>You will no longer receive its messages. Someone has to invite you to come back.</p>
      <ErrorText error={error} />
      <div className="row end">
        <button type="button" className="quiet" onClick={onClose}>Stay</button>
        <button
          type="button"
          className="primary danger"
          disabled={busy}
          onClick={() => {
            run(async () => {
              await client.leave(room.roomId);
              client.open(null);
              onClose();
            });
          }}
        >
          Leave
        </button>
      </div>
    </Modal>
  );
}

export function Dialogs({
  kind,
  client,
  state,
  room,
  onClose,
}: {
  kind: DialogKind;
  client: ChatClient;
  state: ClientState;
  room: Room | undefined;
  onClose: () => void;
}) {
  if (kind === 'direct') return <DirectDialog client={client} onClose={onClose} />;
  if (kind === 'group') return <GroupDialog client={client} onClose={onClose} />;
  if (!room) return null;
  if (kind === 'rename') return <RenameDialog client={client} room={room} state={state} onClose={onClose} />;
  if (kind === 'members') return <MembersDialog client={client} room={room} state={state} onClose={onClose} />;
  return <LeaveDialog client={client} room={room} state={state} onClose={onClose} />;
}
