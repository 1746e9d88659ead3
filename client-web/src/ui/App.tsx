import { useEffect, useMemo, useState } from 'react';

import { describeError, MatrixError } from '../api/client';
import { ChatClient } from '../state/chat';
import { loadSession, saveSession, type Session } from '../state/session';
import { ChatScreen } from './ChatScreen';
import { Login } from './Login';

/** Signed out: the login screen. Signed in: a chat client for the session. */
export function App() {
  const [session, setSession] = useState<Session | null>(() => loadSession());
  const [startError, setStartError] = useState<{ client: ChatClient; message: string } | null>(null);
  const [signedOutReason, setSignedOutReason] = useState<string | null>(null);

  const signedOut = (reason: string) => {
    saveSession(null);
    setSignedOutReason(reason);
    setSession(null);
  };

  const client = useMemo(() => (session ? new ChatClient(session, signedOut) : null), [session]);

  useEffect(() => {
    if (!client) return;
    client.start().catch((error: unknown) => {
      // A token the server no longer knows (logged out elsewhere, server reset) ends the session.
      if (error instanceof MatrixError && error.errcode === 'M_UNKNOWN_TOKEN') signedOut(describeError(error));
      else setStartError({ client, message: describeError(error) });
    });
    return () => {
      client.stop();
    };
  }, [client]);

  const signIn = (next: Session) => {
    saveSession(next);
    setSignedOutReason(null);
    setSession(next);
  };

  const signOut = async () => {
    await client?.logout();
    saveSession(null);
    setSession(null);
  };

  if (!client) return <Login onSignedIn={signIn} notice={signedOutReason} />;
  return (
    <ChatScreen
      client={client}
      startError={startError?.client === client ? startError.message : null}
      onSignOut={() => void signOut()}
    />
  );
}
