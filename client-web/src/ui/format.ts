import { text, type MatrixEvent } from '../state/events';

/** One line for the room list. */
export function messagePreview(event: MatrixEvent, me: string): string {
  const who = event.sender === me ? 'You: ' : '';
  const msgtype = text(event.content, 'msgtype');
  const body = text(event.content, 'body') ?? '';
  if (msgtype === 'm.image') return `${who}Photo: ${body}`;
  if (msgtype === 'm.file') return `${who}File: ${body}`;
  return `${who}${body}`;
}

export function formatTime(ts: number): string {
  if (!ts) return '';
  const date = new Date(ts);
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  return sameDay
    ? date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })
    : date.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

export function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** "Alice is typing…", "Alice and Bob are typing…", "3 people are typing…". */
export function typingText(names: string[]): string {
  if (names.length === 0) return '';
  if (names.length === 1) return `${names[0] ?? ''} is typing…`;
  if (names.length === 2) return `${names[0] ?? ''} and ${names[1] ?? ''} are typing…`;
  return `${names.length} people are typing…`;
}
