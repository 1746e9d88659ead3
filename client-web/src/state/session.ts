// The signed-in session, kept in localStorage so a reload stays signed in.

export interface Session {
  baseUrl: string;
  userId: string;
  deviceId: string;
  accessToken: string;
}

const KEY = 'teatime.session';

export function loadSession(storage: Pick<Storage, 'getItem'> = localStorage): Session | null {
  const raw = storage.getItem(KEY);
  if (!raw) return null;
  try {
    const value: unknown = JSON.parse(raw);
    if (typeof value !== 'object' || value === null) return null;
    const { baseUrl, userId, deviceId, accessToken } = value as Record<string, unknown>;
    if (typeof baseUrl !== 'string' || typeof userId !== 'string' || typeof deviceId !== 'string' || typeof accessToken !== 'string') {
      return null;
    }
    return { baseUrl, userId, deviceId, accessToken };
  } catch {
    return null;
  }
}

export function saveSession(session: Session | null, storage: Pick<Storage, 'setItem' | 'removeItem'> = localStorage): void {
  if (session) storage.setItem(KEY, JSON.stringify(session));
  else storage.removeItem(KEY);
}

/** A full Matrix user id (`@localpart:server`), as typed by a person. */
export function parseUserId(input: string): string | null {
  const id = input.trim();
  return /^@[^\s:]+:\S+$/.test(id) ? id : null;
}
