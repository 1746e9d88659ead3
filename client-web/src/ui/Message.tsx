import { useEffect, useState } from 'react';

import { describeError } from '../api/client';
import { mediaPath } from '../api/media';
import type { ChatClient } from '../state/chat';
import { isMessage, isObjectValue, text } from '../state/events';
import { displayName, type Room } from '../state/rooms';
import type { TimelineItem } from '../state/timeline';
import { formatSize, formatTime } from './format';

/** An authenticated image: fetched with the access token, shown from a blob URL. */
function ImagePreview({ client, mxc, alt }: { client: ChatClient; mxc: string; alt: string }) {
  const [src, setSrc] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const path = mediaPath(mxc, { width: 640, height: 480 });
    if (!path) return;
    let live = true;
    client.media(path).then(
      (url) => { if (live) setSrc(url); },
      (e: unknown) => { if (live) setError(describeError(e)); },
    );
    return () => { live = false; };
  }, [client, mxc]);
  if (error) return <span className="error">Image unavailable: {error}</span>;
  if (!src) return <span className="image-placeholder" aria-label="Loading image" />;
  return <img className="image" src={src} alt={alt} />;
}

/** Saves the file: authenticated media cannot be a plain link, so it is fetched first. */
function DownloadLink({ client, mxc, name, size }: { client: ChatClient; mxc: string; name: string; size?: number }) {
  const [error, setError] = useState<string | null>(null);
  const download = () => {
    const path = mediaPath(mxc);
    if (!path) return;
    client.media(path).then(
      (url) => {
        const a = document.createElement('a');
        a.href = url;
        a.download = name;
        a.click();
      },
      (e: unknown) => { setError(describeError(e)); },
    );
  };
  return (
    <span className="file">
      <button type="button" className="link" onClick={download}>
        ⬇ Download {name}
      </button>
      {size !== undefined && <span className="size"> ({formatSize(size)})</span>}
      {error && <span className="error" role="alert"> {error}</span>}
    </span>
  );
}

function Body({ client, item }: { client: ChatClient; item: TimelineItem }) {
  const { content } = item.event;
  const msgtype = text(content, 'msgtype');
  const body = text(content, 'body') ?? '';
  const url = text(content, 'url');
  const info = isObjectValue(content.info) ? content.info : {};
  const size = typeof info.size === 'number' ? info.size : undefined;
  if ((msgtype === 'm.image' || msgtype === 'm.file') && item.progress !== undefined && item.progress < 1 && item.sendState === 'sending') {
    return (
      <span className="upload">
        <span>{body}</span>
        <progress value={item.progress} max={1} aria-label={`Uploading ${body}`} />
      </span>
    );
  }
  if (msgtype === 'm.image' && url) {
    return (
      <span className="attachment">
        <ImagePreview client={client} mxc={url} alt={body} />
        <DownloadLink client={client} mxc={url} name={body} {...(size !== undefined ? { size } : {})} />
      </span>
    );
  }
  if (msgtype === 'm.file' && url) return <DownloadLink client={client} mxc={url} name={body} {...(size !== undefined ? { size } : {})} />;
  return <span className="text">{body}</span>;
}

/** What a state change says, in words. */
function stateNotice(item: TimelineItem, room: Room): string | null {
  const { event } = item;
  const who = displayName(room, event.sender);
  if (event.type === 'm.room.member' && event.state_key !== undefined) {
    const target = text(event.content, 'displayname') ?? displayName(room, event.state_key);
    switch (text(event.content, 'membership')) {
      case 'join':
        return `${target} joined`;
      case 'invite':
        return `${who} invited ${target}`;
      case 'leave':
        return event.sender === event.state_key ? `${target} left` : `${who} removed ${target}`;
      case 'ban':
        return `${who} banned ${target}`;
      default:
        return null;
    }
  }
  if (event.type === 'm.room.name') return `${who} renamed the room to “${text(event.content, 'name') ?? ''}”`;
  if (event.type === 'm.room.create') return `${who} created the room`;
  return null;
}

export function Message({
  client,
  room,
  item,
  mine,
  readBy,
}: {
  client: ChatClient;
  room: Room;
  item: TimelineItem;
  mine: boolean;
  readBy: string[] | undefined;
}) {
  if (!isMessage(item.event)) {
    const notice = stateNotice(item, room);
    return notice ? <div className="state-notice">{notice}</div> : null;
  }
  const txnId = item.txnId;
  return (
    <article className={`message ${mine ? 'mine' : ''} ${item.sendState ?? ''}`} aria-label={`Message from ${displayName(room, item.event.sender)}`}>
      {!mine && <span className="sender">{displayName(room, item.event.sender)}</span>}
      <div className="bubble">
        <Body client={client} item={item} />
      </div>
      <div className="meta">
        <time dateTime={new Date(item.event.origin_server_ts).toISOString()}>{formatTime(item.event.origin_server_ts)}</time>
        {mine && item.sendState === 'sending' && <span className="state">Sending…</span>}
        {mine && item.sendState === 'sent' && <span className="state">Sent</span>}
        {mine && item.sendState === 'failed' && txnId && (
          <span className="state failed" role="alert">
            Not sent{item.error ? `: ${item.error}` : ''}{' '}
            <button type="button" className="link" onClick={() => { client.retry(txnId); }}>
              Retry
            </button>{' '}
            <button type="button" className="link" onClick={() => { client.discard(txnId); }}>
              Discard
            </button>
          </span>
        )}
        {readBy && readBy.length > 0 && <span className="seen">Seen by {readBy.join(', ')}</span>}
      </div>
    </article>
  );
}
