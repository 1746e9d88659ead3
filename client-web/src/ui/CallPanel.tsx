import { useEffect, useRef, useState } from 'react';

import type { CallManager, CallView } from '../call/manager';
import { participantsOf, remoteTiles, type ActiveCall } from '../call/state';
import { displayName, type Room } from '../state/rooms';
import { Avatar } from './Avatar';

/** One person's video, with their name under it; plays `stream` once it is there. */
function VideoTile({
  stream,
  userId,
  caption,
  local = false,
  cameraOff = false,
}: {
  stream: MediaStream | null;
  userId: string;
  caption: string;
  local?: boolean;
  cameraOff?: boolean;
}) {
  const video = useRef<HTMLVideoElement>(null);
  const [blocked, setBlocked] = useState(false);

  useEffect(() => {
    const element = video.current;
    if (!element) return;
    element.muted = local;
    element.srcObject = stream;
    if (!stream) return;
    element.play().then(
      () => { setBlocked(false); },
      (error: unknown) => {
        // Autoplay with sound needs a gesture on this page; a click on the tile gives one.
        if (error instanceof DOMException && error.name === 'NotAllowedError') setBlocked(true);
      },
    );
  }, [stream, local]);

  return (
    <figure className={`tile ${local ? 'local' : ''}`}>
      <video ref={video} autoPlay playsInline muted={local} aria-label={local ? 'Your video' : `Video of ${userId}`} />
      {(!stream || cameraOff) && (
        <div className="tile-cover">
          <Avatar name={caption} />
          <span>{cameraOff ? 'Camera off' : 'Connecting…'}</span>
        </div>
      )}
      {blocked && (
        <button type="button" className="tile-cover play" onClick={() => void video.current?.play().then(() => { setBlocked(false); })}>
          Play video and sound
        </button>
      )}
      <figcaption>{caption}</figcaption>
    </figure>
  );
}

function MicIcon({ off }: { off: boolean }) {
  return (
    <svg width="20" height="20" viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round">
      <rect x="9" y="3" width="6" height="11" rx="3" />
      <path d="M5 11a7 7 0 0 0 14 0M12 18v3" />
      {off && <path d="M4 4l16 16" />}
    </svg>
  );
}

function CameraIcon({ off }: { off: boolean }) {
  return (
    <svg width="20" height="20" viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" strokeWidth="2" strokeLinecap="round" strokeLinejoin="round">
      <rect x="3" y="6" width="13" height="12" rx="2" />
      <path d="M16 10l5-3v10l-5-3" />
      {off && <path d="M3 4l17 17" />}
    </svg>
  );
}

function statusText(active: ActiveCall, others: number): string {
  if (active.phase === 'starting') return 'Starting your camera and microphone…';
  if (active.phase === 'joining') return 'Joining the call…';
  if (active.connection !== 'connected') return 'Connecting…';
  return others === 0 ? 'Waiting for others to join' : `In the call with ${others === 1 ? '1 other' : `${others} others`}`;
}

/** The call of the open room: who is in it, and once joined the videos and the controls. */
export function CallPanel({ calls, view, room }: { calls: CallManager; view: CallView; room: Room }) {
  const { state } = view;
  const roomId = room.roomId;
  const active = state.active?.roomId === roomId ? state.active : null;
  const inCall = participantsOf(state, roomId);
  const error = state.error?.roomId === roomId ? state.error.message : null;
  if (!active && inCall.length === 0 && !error) return null;
  const names = inCall.map((id) => (id === state.me ? 'you' : displayName(room, id)));
  const tiles = active ? remoteTiles(state) : [];

  return (
    <section className={`call ${active ? 'joined' : ''}`} aria-label="Call">
      {!active && inCall.length > 0 && (
        <p className="call-summary" role="status">
          <span className="call-dot" aria-hidden="true" />
          In the call: {names.join(', ')}
        </p>
      )}
      {active && (
        <>
          <div className="call-grid" data-tiles={tiles.length + 1}>
            <VideoTile stream={view.local} userId={state.me} caption="You" local cameraOff={active.phase !== 'starting' && !active.cameraOn} />
            {tiles.map((tile) => (
              <VideoTile
                key={tile.userId}
                stream={tile.streamId ? (view.remote.get(tile.streamId) ?? null) : null}
                userId={tile.userId}
                caption={tile.userId}
              />
            ))}
          </div>
          <div className="call-bar">
            <span className="call-status" role="status">
              {statusText(active, tiles.length)}
            </span>
            <div className="call-controls" role="group" aria-label="Call controls">
              <button
                type="button"
                className="call-toggle"
                aria-label="Mute microphone"
                title={active.micOn ? 'Mute microphone' : 'Unmute microphone'}
                aria-pressed={!active.micOn}
                disabled={!active.hasAudio}
                onClick={() => { calls.toggleMic(); }}
              >
                <MicIcon off={!active.micOn} />
              </button>
              <button
                type="button"
                className="call-toggle"
                aria-label="Turn off camera"
                title={active.cameraOn ? 'Turn off camera' : 'Turn on camera'}
                aria-pressed={!active.cameraOn}
                disabled={!active.hasVideo}
                onClick={() => { calls.toggleCamera(); }}
              >
                <CameraIcon off={!active.cameraOn} />
              </button>
              <button type="button" className="primary danger" onClick={() => { calls.leave(roomId); }}>
                Leave call
              </button>
            </div>
          </div>
        </>
      )}
      {error && (
        <p className="error call-error" role="alert">
          {error}{' '}
          <button type="button" className="link" onClick={() => { calls.dismissError(); }}>
            Dismiss
          </button>
        </p>
      )}
    </section>
  );
}
