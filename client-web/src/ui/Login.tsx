import { useId, useState, type SyntheticEvent } from 'react';

import { call, createApi, describeError, MatrixError, normaliseBaseUrl } from '../api/client';
import type { Session } from '../state/session';

type Mode = 'login' | 'register';

const DEVICE_NAME = 'TeaTime web';

async function signIn(mode: Mode, baseUrl: string, username: string, password: string): Promise<Session> {
  const api = createApi(baseUrl);
  if (mode === 'register') {
    const answer = await call(
      api.POST('/_matrix/client/v3/register', {
        body: { username, password, auth: { type: 'm.login.dummy' }, initial_device_display_name: DEVICE_NAME },
      }),
    );
    if (!answer.access_token || !answer.device_id) throw new Error('The server created the account but did not sign it in');
    return { baseUrl, userId: answer.user_id, deviceId: answer.device_id, accessToken: answer.access_token };
  }
  const answer = await call(
    api.POST('/_matrix/client/v3/login', {
      body: {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: username },
        password,
        initial_device_display_name: DEVICE_NAME,
      },
    }),
  );
  return { baseUrl, userId: answer.user_id, deviceId: answer.device_id, accessToken: answer.access_token };
}

/** Sign in or create an account, on this server or any Matrix homeserver. */
export function Login({ onSignedIn, notice }: { onSignedIn: (session: Session) => void; notice: string | null }) {
  const [mode, setMode] = useState<Mode>('login');
  const [server, setServer] = useState(() => window.location.origin);
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const ids = useId();

  const submit = (e: SyntheticEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    signIn(mode, normaliseBaseUrl(server), username.trim(), password)
      .then(onSignedIn)
      .catch((err: unknown) => {
        const badPassword = mode === 'login' && err instanceof MatrixError && err.errcode === 'M_FORBIDDEN';
        setError(badPassword ? 'Wrong username or password' : describeError(err));
        setBusy(false);
      });
  };

  const title = mode === 'login' ? 'Sign in' : 'Create account';
  return (
    <main className="login">
      <form className="card" onSubmit={submit} aria-labelledby={`${ids}-title`}>
        <div className="brand" aria-hidden="true">
          <img src="/favicon.svg" alt="" width="40" height="40" />
          <span>TeaTime</span>
        </div>
        <h1 id={`${ids}-title`}>{title}</h1>
        {notice && <p className="notice" role="status">{notice}</p>}
        <div className="tabs" role="group" aria-label="Account">
          <button type="button" aria-pressed={mode === 'login'} onClick={() => { setMode('login'); setError(null); }}>
            I have an account
          </button>
          <button type="button" aria-pressed={mode === 'register'} onClick={() => { setMode('register'); setError(null); }}>
            I am new here
          </button>
        </div>
        <label htmlFor={`${ids}-server`}>Server</label>
        <input
          id={`${ids}-server`}
          value={server}
          onChange={(e) => { setServer(e.target.value); }}
          inputMode="url"
          autoComplete="url"
          required
        />
        <label htmlFor={`${ids}-user`}>Username</label>
        <input
          id={`${ids}-user`}
          value={username}
          onChange={(e) => { setUsername(e.target.value); }}
          autoComplete="username"
          autoCapitalize="none"
          spellCheck={false}
          required
        />
        <label htmlFor={`${ids}-password`}>Password</label>
        <input
          id={`${ids}-password`}
          type="password"
          value={password}
          onChange={(e) => { setPassword(e.target.value); }}
          autoComplete={mode === 'login' ? 'current-password' : 'new-password'}
          required
        />
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button className="primary" type="submit" disabled={busy}>
          {busy ? 'Please wait…' : title}
        </button>
      </form>
    </main>
  );
}
