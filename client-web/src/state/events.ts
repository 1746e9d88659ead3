// Matrix events as the client uses them. The OpenAPI document leaves event
// bodies open (`items: {}`), so events are checked here once, at the edge.

export interface MatrixEvent {
  event_id: string;
  type: string;
  sender: string;
  origin_server_ts: number;
  content: Record<string, unknown>;
  state_key?: string;
  unsigned?: { transaction_id?: string; [key: string]: unknown };
}

/** A stripped state event of an invite (no id, no timestamp). */
export interface StrippedEvent {
  type: string;
  sender: string;
  state_key: string;
  content: Record<string, unknown>;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The value as a client event, or null when it is not one. */
export function asEvent(value: unknown): MatrixEvent | null {
  if (!isObject(value)) return null;
  const { event_id, type, sender, origin_server_ts, content, state_key, unsigned } = value;
  if (typeof event_id !== 'string' || typeof type !== 'string' || typeof sender !== 'string') return null;
  return {
    event_id,
    type,
    sender,
    origin_server_ts: typeof origin_server_ts === 'number' ? origin_server_ts : 0,
    content: isObject(content) ? content : {},
    ...(typeof state_key === 'string' ? { state_key } : {}),
    ...(isObject(unsigned) ? { unsigned } : {}),
  };
}

/** Every value of `values` that is a client event. */
export function asEvents(values: readonly unknown[] | undefined): MatrixEvent[] {
  return (values ?? []).map(asEvent).filter((e): e is MatrixEvent => e !== null);
}

/** The value as a stripped state event, or null. */
export function asStripped(value: unknown): StrippedEvent | null {
  if (!isObject(value)) return null;
  const { type, sender, state_key, content } = value;
  if (typeof type !== 'string' || typeof sender !== 'string' || typeof state_key !== 'string') return null;
  return { type, sender, state_key, content: isObject(content) ? content : {} };
}

export function text(content: Record<string, unknown>, key: string): string | undefined {
  const value = content[key];
  return typeof value === 'string' ? value : undefined;
}

export function isObjectValue(value: unknown): value is Record<string, unknown> {
  return isObject(value);
}

/** Messages people see in the timeline and count as unread. */
export function isMessage(event: { type: string }): boolean {
  return event.type === 'm.room.message';
}
